"""How far YuNet can shrink an image searched for large faces: WIDER AP/recall per ``network_face_px``.

Prints, for min face 40 (the video default), the AP and recall on faces >= 40 px of the
WIDER FACE subset and the median ms per image, for each size a 40 px face is shrunk to
before the network (``YuNetConfig.network_face_px``; "full" = not shrunk). The default in
``facesense.detect.yunet.DEFAULT_NETWORK_FACE_PX`` was chosen from this table.

    python scripts/yunet_network_face.py [--wider ../shared/data/wider_face_val_subset]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.eval.detect import evaluate_detection

logger = logging.getLogger("yunet_network_face")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wider", type=Path, default=Path("../shared/data/wider_face_val_subset"))
    parser.add_argument("--sizes", default="full,30,24,20,16")
    parser.add_argument("--min-face", type=float, default=40.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("CPU: %s", cpu_info().describe())
    logger.info("%-8s %6s %7s %8s", "network", "AP", "recall", "ms/img")
    for size in args.sizes.split(","):
        face_px = None if size == "full" else float(size)
        detector = make_detector("yunet", min_face_px=args.min_face, verify=False, network_face_px=face_px)
        (report,) = evaluate_detection(
            detector, args.wider / "wider_face_val_bbx_gt.txt", args.wider / "images", min_face_px=(args.min_face,)
        )
        logger.info("%-8s %6.3f %7.3f %8.1f", size, report.ap, report.recall, report.detect_ms_median)


if __name__ == "__main__":
    main()
