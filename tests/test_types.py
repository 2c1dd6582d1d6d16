"""The Faces container: shape validation, indexing, replace."""

from __future__ import annotations

import numpy as np
import pytest

from facesense.types import Faces, Frame


def make(n: int) -> Faces:
    xyxy = np.array([[i, i, i + 10, i + 20] for i in range(n)], dtype=np.float32)
    return Faces(xyxy=xyxy, scores=np.linspace(0.9, 0.5, n), landmarks=np.zeros((n, 5, 2)))


def test_empty() -> None:
    faces = Faces.empty()
    assert len(faces) == 0
    assert faces.xyxy.shape == (0, 4)
    assert list(faces) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((2, 3)), "scores": np.zeros(2), "landmarks": np.zeros((2, 5, 2))}, r"xyxy: expected shape \(N, 4\), got \(2, 3\)"),
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(3), "landmarks": np.zeros((2, 5, 2))}, "scores: expected 2 rows"),
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(2), "landmarks": np.zeros((2, 4, 2))}, r"landmarks: expected shape \(N, 5, 2\)"),
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(2), "landmarks": np.zeros((2, 5, 2)), "embeddings": np.zeros((3, 8))}, r"embeddings: expected shape \(2, D\)"),
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(2), "landmarks": np.zeros((2, 5, 2)), "names": ("a",)}, "names: expected 2 entries"),
    ],
)
def test_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faces(**kwargs)


def test_dtypes_are_float32() -> None:
    faces = make(2)
    assert faces.xyxy.dtype == np.float32
    assert faces.scores.dtype == np.float32
    assert faces.landmarks.dtype == np.float32


def test_int_index_gives_face_view() -> None:
    faces = make(3).replace(names=("a", None, "c"), track_ids=np.array([7, 8, 9]))
    face = faces[1]
    assert face.name is None
    assert face.track_id == 8
    assert face.size_px == pytest.approx(10.0)
    assert faces[-1].name == "c"
    with pytest.raises(IndexError):
        faces[3]


def test_mask_and_slice_indexing_keep_fields_aligned() -> None:
    faces = make(4).replace(names=("a", "b", "c", "d"), embeddings=np.eye(4, dtype=np.float32))
    sub = faces[faces.scores > 0.7]
    assert len(sub) == 2
    assert sub.names == ("a", "b")
    np.testing.assert_array_equal(sub.embeddings, np.eye(4)[:2])
    assert faces[1:3].names == ("b", "c")
    assert faces[[3, 0]].names == ("d", "a")
    with pytest.raises(IndexError, match="boolean mask"):
        faces[np.array([True, False])]


def test_replace_returns_new_object() -> None:
    faces = make(2)
    named = faces.replace(names=("x", "y"))
    assert faces.names is None
    assert named.names == ("x", "y")
    assert named.xyxy is faces.xyxy


def test_concatenate() -> None:
    both = Faces.concatenate([make(2), make(3)])
    assert len(both) == 5
    assert both.embeddings is None
    assert len(Faces.concatenate([])) == 0


def test_frame_size() -> None:
    frame = Frame(image=np.zeros((36, 64, 3), np.uint8), index=3)
    assert frame.size_wh == (64, 36)
