"""facesense: real-time face detection and recognition on a plain CPU."""
