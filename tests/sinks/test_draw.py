"""Drawing boxes, labels and the FPS line."""

from __future__ import annotations

import numpy as np
import pytest

from facesense.sinks.draw import (
    KNOWN_BGR,
    PENDING_BGR,
    UNKNOWN_BGR,
    annotate,
    annotate_faces,
    draw_faces,
    draw_hud,
    face_label,
)
from facesense.types import Face, IdentityState


def _face(track_id: int | None, name: str | None, confidence: float | None, state: IdentityState | None) -> Face:
    return Face(
        xyxy=np.zeros(4, np.float32),
        score=0.99,
        landmarks=np.zeros((5, 2), np.float32),
        embedding=None,
        track_id=track_id,
        name=name,
        distance=None,
        confidence=confidence,
        state=state,
    )


@pytest.mark.parametrize(
    ("args", "label"),
    [
        ((3, "lin", 0.923, IdentityState.KNOWN), "#3 lin 92%"),
        ((4, None, 0.8, IdentityState.UNKNOWN), "#4 unknown"),
        ((5, None, 0.0, IdentityState.PENDING), "#5"),
        # The state says it, not the confidence: a pending face with a confidence is pending.
        ((6, None, 0.7, IdentityState.PENDING), "#6"),
        ((None, "ann", None, IdentityState.KNOWN), "ann"),
        ((7, "ann", float("nan"), IdentityState.KNOWN), "#7 ann"),
        # Faces never identified (no states): named ones are known.
        ((8, "ann", None, None), "#8 ann"),
        ((9, None, None, None), "#9"),
    ],
)
def test_face_label(args: tuple, label: str) -> None:
    assert face_label(_face(*args)) == label


def _colour_near(image: np.ndarray, y: int, x: int) -> tuple[int, int, int]:
    """The palette colour closest to the pixels around (x, y) (lines are anti-aliased)."""
    patch = image[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).astype(int)
    best = max(patch, key=lambda p: int(p.sum()))
    palette = [KNOWN_BGR, UNKNOWN_BGR, PENDING_BGR]
    return min(palette, key=lambda c: int(np.abs(np.array(c) - best).sum()))


def test_draw_faces_draws_on_a_copy_in_the_state_colour(make_result) -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    result = make_result(
        boxes=[(20, 40, 100, 140), (150, 40, 230, 140), (250, 150, 300, 230)],
        ids=[1, 2, 3],
        names=["ann", None, None],
        confidences=[0.9, 0.8, 0.8],
        states=[IdentityState.KNOWN, IdentityState.UNKNOWN, IdentityState.PENDING],
        image=black,
    )
    out = draw_faces(result.frame.image, result.faces)
    assert out is not black and not black.any()  # input untouched
    assert out.shape == black.shape and out.dtype == np.uint8
    # The left edge of each box is in its state's colour.
    assert _colour_near(out, 90, 20) == KNOWN_BGR
    assert _colour_near(out, 90, 150) == UNKNOWN_BGR
    assert _colour_near(out, 190, 250) == PENDING_BGR
    assert not out[200:, :10].any()  # nothing drawn far from the faces


def test_draw_handles_boxes_at_and_over_the_border(make_result) -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    result = make_result(
        boxes=[(-30, -20, 50, 40), (290, 200, 400, 300)], ids=[1, 2], names=["ann", None], image=black
    )
    out = draw_faces(result.frame.image, result.faces)
    assert out.shape == (240, 320, 3)
    # The parts of the boxes inside the image are drawn.
    assert _colour_near(out, 20, 50) == KNOWN_BGR
    assert _colour_near(out, 230, 290) == PENDING_BGR


def test_hud_and_annotate(make_result) -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    hud = draw_hud(black, "12.5 fps")
    assert hud[:20, :60].any() and not hud[100:].any()
    out = annotate(make_result(boxes=[(20, 40, 100, 140)], ids=[1], image=black))
    assert out[:20, :60].any()
    bare = annotate(make_result(boxes=[(20, 40, 100, 140)], ids=[1], image=black), show_fps=False)
    assert not bare[:15, 150:].any()


def test_annotate_faces_for_still_images(make_result) -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    faces = make_result(boxes=[(20, 40, 100, 140)], ids=[1], image=black).faces
    faces = faces.replace(landmarks=np.full((1, 5, 2), 60.0, np.float32))
    out = annotate_faces(black, faces)
    assert _colour_near(out, 90, 20) == KNOWN_BGR
    assert _colour_near(out, 60, 60) == UNKNOWN_BGR  # a landmark dot
    assert not black.any()
