"""Scene cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesense.track import SceneCutDetector


def test_scene_cuts_in_the_clip(examples_dir: Path) -> None:
    from facesense.capture import open_source

    detector = SceneCutDetector()
    with open_source(examples_dir / "short_hamilton_clip.mp4") as source:
        cuts = [f.index for f in source if detector.update(f.image)]
    assert cuts == [20, 82, 211]


def test_a_camera_pan_is_not_a_cut() -> None:
    rng = np.random.default_rng(3)
    scene = rng.integers(0, 255, (240, 640, 3), dtype=np.uint8)
    scene = np.repeat(np.repeat(scene[::8, ::8], 8, axis=0), 8, axis=1)  # blocky, like a real picture
    detector = SceneCutDetector()
    cuts = [detector.update(np.ascontiguousarray(scene[:, x : x + 320])) for x in range(0, 80, 8)]
    assert cuts == [False] * 10
    other = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) // 4  # another, darker shot
    assert detector.update(other)
