"""How far can the rotation search go on turned WIDER FACE images? (issue 14, +-60 goal)

Three measurements with the default photo detector (YuNet, the non-face check, min face 20);
the first two hold the copies' faces to the bar alone, as before ``confirm`` existed:

* ``ceiling``: images turned by 60 degrees, searched in one copy turned exactly back
  (-60) besides the image itself, with the copy's faces held to the image's own bar
  (0.7) and to the bar the rotation search uses (``ROTATED_MIN_SCORE``, 0.8). No set of
  copies aligns a face better, so this bounds what denser copies can gain per copy: what
  is left below upright is resampling (the faces also fall elsewhere on the network's
  grid) and the bar.
* ``dense``: copies every 30 degrees (10 in all, against the photos' 6), recall on
  the turns the grid holds (0, +-60) and two it does not (45, 75), then false faces on
  ``animals/`` and ``negatives/``.
* ``confirm``: the photos' six copies with the copies' faces under the bar dropped
  (``confirm=False``) and confirmed by the non-face check (``confirm=True``, what
  ``make_detector`` sets for photos with YuNet;
  :data:`facesense.detect.rotate.CONFIRM_ONET_SCORE`): recall at 0 and +-60, false faces
  on ``animals/`` and ``negatives/``, and AP, precision and false detections on the
  upright WIDER images (faces >= 20 px, IoU 0.5).

    python scripts/wider_rotation_limits.py ceiling
    python scripts/wider_rotation_limits.py dense
    python scripts/wider_rotation_limits.py confirm
    python scripts/wider_rotation_limits.py gained [--names a.jpg,b.jpg]

``gained`` lists, per image turned by +-60, the faces the confirmation adds (box, score),
for comparing CPUs: run it natively and under ``qemu-x86_64 -cpu Haswell`` (AVX2 code
paths of ONNX Runtime) and diff the two lists. On six images (``--names
22_Picnic_Picnic_22_541.jpg,6_Funeral_Funeral_6_760.jpg,30_Surgeons_Surgeons_30_491.jpg,58_Hockey_icehockey_puck_58_655.jpg,18_Concerts_Concerts_18_815.jpg,20_Family_Group_Family_Group_20_277.jpg``)
the 11 faces added were the same, boxes and scores to four decimals, natively on the
AVX-512 EPYC (20 s) and under ``qemu-x86_64 -cpu Haswell`` (AVX2 only, 17.5 min).

Measured 2026-12-07 (``AMD EPYC, 2 cores, x86_64, AVX2 yes, AVX-512 yes, VNNI yes``),
310 faces >= 40 px of the 153 subset images; upright without the search 0.926, with the
photos' 6 copies 0.932 and 0.887 / 0.887 at +-60:

* ceiling: 0.919 at bar 0.7, 0.897 at bar 0.8;
* dense: 0.942 upright, 0.913 / 0.919 at +-60, 0.906 at 45 and at 75; 1 false face on
  the 67 animal photos, 0 on negatives; 377-395 s for the five turns (about 0.5 s per
  image).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from facesense.cpu import cpu_info
from facesense.detect import ROTATED_MIN_SCORE, DetectorKind, make_detector
from facesense.detect.rotate import RotatingDetector
from facesense.eval.detect import evaluate_detection
from facesense.eval.negatives import evaluate_negatives
from facesense.eval.rotated import evaluate_rotated_wider

DENSE_ANGLES = (0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0, 120.0, -120.0, 180.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("what", choices=["ceiling", "dense", "confirm", "gained"])
    parser.add_argument("--names", default=None, help="gained: only these image file names (comma-separated)")
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FACESENSE_DATA", beside_repo)))
    args = parser.parse_args()
    wider = args.data / "wider_face_val_subset"
    annotations, images = wider / "wider_face_val_bbx_gt.txt", wider / "images"
    print(cpu_info().describe())
    if args.what == "gained":
        _gained(annotations, images, None if args.names is None else set(args.names.split(",")))
        return
    if args.what == "confirm":
        detector = make_detector(rotations=True)
        assert isinstance(detector, RotatingDetector)
        for confirm in (False, True):
            detector.confirm = confirm
            start = time.perf_counter()
            report = evaluate_rotated_wider(detector, annotations, images, angles=(0.0, 60.0, -60.0))
            seconds = time.perf_counter() - start
            falses = {f: evaluate_negatives(detector, args.data / f).total for f in ("animals", "negatives")}
            (upright,) = evaluate_detection(detector, annotations, images, min_face_px=(20.0,))
            print(
                f"confirm={confirm}: "
                + ", ".join(f"{a.angle_deg:g}: {a.recall:.3f}" for a in report.angles)
                + f" ({seconds:.0f} s); false faces on animals {falses['animals']}, negatives {falses['negatives']}; "
                f"upright WIDER >= 20 px: AP {upright.ap:.3f}, precision {upright.precision:.3f}, "
                f"{upright.false_positives} false detections"
            )
        return
    if args.what == "ceiling":
        detector = make_detector(rotations=(0.0, -60.0))
        assert isinstance(detector, RotatingDetector)
        detector.confirm = False
        own = getattr(detector.config, "score_threshold", "the detector's")
        for bar in (None, ROTATED_MIN_SCORE[DetectorKind.YUNET]):
            detector.rotated_min_score = bar  # None: the copy keeps what the detector reports
            report = evaluate_rotated_wider(detector, annotations, images, angles=(60.0,))
            label = f"{own} (the image's own)" if bar is None else str(bar)
            print(f"images turned 60, copy turned -60, bar {label}: recall {report.angles[0].recall:.3f}")
        return
    detector = make_detector(rotations=DENSE_ANGLES)
    assert isinstance(detector, RotatingDetector)
    detector.confirm = False
    start = time.perf_counter()
    report = evaluate_rotated_wider(detector, annotations, images, angles=(0.0, 60.0, -60.0, 45.0, 75.0))
    seconds = time.perf_counter() - start
    print(
        "copies every 30 degrees: "
        + ", ".join(f"{a.angle_deg:g}: {a.recall:.3f}" for a in report.angles)
        + f" ({seconds:.0f} s)"
    )
    for folder in ("animals", "negatives"):
        print(f"false faces on {folder}: {evaluate_negatives(detector, args.data / folder).total}")


def _gained(annotations: Path, images: Path, names: set[str] | None) -> None:
    """Print the faces the confirmation adds to each WIDER image turned by +-60 degrees."""
    import numpy as np

    from facesense.eval.detect import read_wider_annotations
    from facesense.geometry import iou_matrix, rotate_image
    from facesense.imageio import load_image

    detector = make_detector(rotations=True)
    assert isinstance(detector, RotatingDetector)
    total = 0
    for truth in read_wider_annotations(annotations):
        if names is not None and Path(truth.path).name not in names:
            continue
        image = load_image(images / truth.path)
        for angle in (60.0, -60.0):
            turned, _ = rotate_image(image, angle)
            detector.confirm = False
            plain = detector.detect(turned)
            detector.confirm = True
            confirmed = detector.detect(turned)
            for k in range(len(confirmed)):
                box = confirmed.xyxy[k : k + 1]
                if len(plain) == 0 or iou_matrix(box, plain.xyxy).max() < 0.3:
                    total += 1
                    print(f"{Path(truth.path).name} {angle:+.0f}: {np.round(box[0]).astype(int).tolist()} {confirmed.scores[k]:.4f}")
    print(f"{total} faces added")


if __name__ == "__main__":
    main()
