"""Evaluation of facesense's stages on public benchmarks (WIDER FACE detection, ...)."""
