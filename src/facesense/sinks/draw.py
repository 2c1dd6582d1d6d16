"""Drawing results onto frames: boxes, names, track ids and an FPS line.

Functions return a new image and never modify their input. Colours are BGR, one per
:class:`~facesense.types.IdentityState`: known faces green, unknown faces orange,
faces not identified yet grey.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from facesense.types import IdentityState

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Face, Faces, FrameResult

__all__ = [
    "KNOWN_BGR",
    "PENDING_BGR",
    "STATE_BGR",
    "UNKNOWN_BGR",
    "annotate",
    "annotate_faces",
    "draw_faces",
    "draw_hud",
    "face_label",
    "face_state",
]

KNOWN_BGR = (60, 200, 60)
UNKNOWN_BGR = (0, 140, 255)
PENDING_BGR = (170, 170, 170)
STATE_BGR = {IdentityState.KNOWN: KNOWN_BGR, IdentityState.UNKNOWN: UNKNOWN_BGR, IdentityState.PENDING: PENDING_BGR}
TEXT_BGR = (255, 255, 255)
REFERENCE_SIDE_PX = 720.0  # text scale 1.0 on a 720p frame


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode("ascii", "replace").decode("ascii")


def face_state(face: Face) -> IdentityState:
    """The face's identity state; for faces never identified, ``KNOWN`` if named, else ``PENDING``."""
    if face.state is not None:
        return face.state
    return IdentityState.KNOWN if face.name is not None else IdentityState.PENDING


def face_label(face: Face) -> str:
    """The text drawn above a face: ``"#3 Lin 92%"``, ``"#4 unknown"``, ``"#5"`` (pending)."""
    parts = [] if face.track_id is None else [f"#{face.track_id}"]
    state = face_state(face)
    if state is IdentityState.KNOWN and face.name is not None:
        parts.append(face.name)
        if face.confidence is not None and math.isfinite(face.confidence):
            parts.append(f"{face.confidence * 100:.0f}%")
    elif state is IdentityState.UNKNOWN:
        parts.append("unknown")
    return " ".join(parts)


def _scale(image: npt.NDArray[np.uint8]) -> float:
    return max(0.4, min(int(image.shape[0]), int(image.shape[1])) / REFERENCE_SIDE_PX)


def draw_faces(image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with a box and label for every face, in its state's colour.

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        faces: boxes, with ``track_ids``, ``names``, ``states`` and ``confidences`` when
            known (see :func:`face_state` for faces without states).

    Returns:
        The annotated copy.
    """
    import cv2

    out = image.copy()
    if len(faces) == 0:
        return out
    scale = _scale(out)
    thick = max(1, round(2 * scale))
    h, w = out.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = (round(float(v)) for v in face.xyxy)
        color = STATE_BGR[face_state(face)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        label = _ascii(face_label(face))
        if not label:
            continue
        font_scale = 0.5 * scale
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        tx = int(np.clip(x1, 0, max(0, w - tw)))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, -1)
        cv2.putText(out, label, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def draw_hud(image: npt.NDArray[np.uint8], text: str) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with one line of text on a dark strip at the top left."""
    import cv2

    out = image.copy()
    scale = _scale(out)
    font_scale = 0.55 * scale
    (tw, th), base = cv2.getTextSize(_ascii(text), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, _ascii(text), (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_BGR, 1, cv2.LINE_AA)
    return out


def annotate(result: FrameResult, *, show_fps: bool = True) -> npt.NDArray[np.uint8]:
    """The frame of ``result`` with its faces and (optionally) an FPS line drawn on."""
    out = draw_faces(result.frame.image, result.faces)
    if show_fps:
        out = draw_hud(out, f"{result.fps:5.1f} fps  frame {result.frame.index}  faces {len(result.faces)}")
    return out


def annotate_faces(image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with each detection's box, score and five landmarks.

    For still images (``facesense detect --annotate``); tracked, named faces use
    :func:`draw_faces`.
    """
    import cv2

    out = image.copy()
    scale = _scale(out)
    thick = max(1, round(2 * scale))
    radius = max(1, round(2 * scale))
    h = out.shape[0]
    for face in faces:
        x1, y1, x2, y2 = (round(float(v)) for v in face.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), KNOWN_BGR, thick, cv2.LINE_AA)
        for x, y in face.landmarks:
            cv2.circle(out, (round(float(x)), round(float(y))), radius, UNKNOWN_BGR, -1, cv2.LINE_AA)
        label = f"{face.score:.2f}"
        font_scale = 0.5 * scale
        (_, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        cv2.putText(out, label, (max(0, x1), ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, KNOWN_BGR, 1, cv2.LINE_AA)
    return out
