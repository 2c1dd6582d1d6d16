"""Helpers for the sink tests: synthetic frames and results."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from facesense.types import Event, EventType, Faces, Frame, FrameResult, IdentityState

MakeResult = Callable[..., FrameResult]


@pytest.fixture()
def make_result() -> MakeResult:
    """Build a FrameResult: ``make_result(index, boxes, ids, names, ...)``.

    ``states`` default to ``KNOWN`` for named faces and ``PENDING`` for the others.
    """

    def make(
        index: int = 0,
        boxes: Sequence[Sequence[float]] = (),
        ids: Sequence[int] = (),
        names: Sequence[str | None] | None = None,
        *,
        size_wh: tuple[int, int] = (320, 240),
        events: Sequence[Event] = (),
        quality: Sequence[float] | None = None,
        detected: bool = True,
        confidences: Sequence[float] | None = None,
        states: Sequence[IdentityState] | None = None,
        image: np.ndarray | None = None,
    ) -> FrameResult:
        w, h = size_wh
        if image is None:
            rng = np.random.default_rng(index)
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        frame = Frame(image=image, index=index, timestamp=index / 25.0, source_id="test")
        xyxy = np.array(boxes, np.float32).reshape(-1, 4)
        n = len(xyxy)
        names = tuple(names) if names is not None else (None,) * n
        if states is None:
            states = [IdentityState.KNOWN if name is not None else IdentityState.PENDING for name in names]
        faces = Faces(
            xyxy=xyxy,
            scores=np.full(n, 0.99, np.float32),
            landmarks=np.zeros((n, 5, 2), np.float32),
            track_ids=np.array(ids, np.int64).reshape(n),
            names=names,
            distances=np.full(n, np.nan, np.float32),
            confidences=np.array(confidences if confidences is not None else [0.9] * n, np.float32).reshape(n),
            quality=np.array(quality if quality is not None else [0.8] * n, np.float32).reshape(n),
            states=tuple(states),
        )
        return FrameResult(frame=frame, faces=faces, detected=detected, events=tuple(events), fps=25.0)

    return make


def track_event(kind: EventType, track_id: int, frame: int, name: str | None = None) -> Event:
    return Event(
        type=kind,
        time=frame / 25.0,
        frame=frame,
        source="test",
        track_id=track_id,
        name=name,
        confidence=0.9 if name else 0.0,
        xyxy=(10.0, 20.0, 60.0, 90.0),
    )


@pytest.fixture()
def event() -> Callable[..., Event]:
    """``event(EventType.X, track_id, frame, name=None)``: a track Event."""
    return track_event
