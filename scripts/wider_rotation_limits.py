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
  (``confirm=False``) and confirmed by the non-face check (``confirm=True``, the default,
  :data:`facesense.detect.rotate.CONFIRM_ONET_SCORE`): recall at 0 and +-60, false
  faces on ``animals/`` and ``negatives/``, and AP, precision and false detections on the
  upright WIDER images (faces >= 20 px, IoU 0.5).

    python scripts/wider_rotation_limits.py ceiling
    python scripts/wider_rotation_limits.py dense
    python scripts/wider_rotation_limits.py confirm

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
    parser.add_argument("what", choices=["ceiling", "dense", "confirm"])
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FACESENSE_DATA", beside_repo)))
    args = parser.parse_args()
    wider = args.data / "wider_face_val_subset"
    annotations, images = wider / "wider_face_val_bbx_gt.txt", wider / "images"
    print(cpu_info().describe())
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


if __name__ == "__main__":
    main()
