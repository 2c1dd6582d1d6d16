"""MTCNN's graph rewriting: same outputs as the shipped networks, from uint8 BGR input."""

from __future__ import annotations

import numpy as np
import pytest

from facesense.errors import ModelError
from facesense.models import create_session, mtcnn_onnx, packaged_file, registry


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mtcnn_pnet", (2, 31, 45, 3)),
        ("mtcnn_rnet", (3, 24, 24, 3)),
        ("mtcnn_onet", (3, 48, 48, 3)),
    ],
)
def test_adapted_graph_matches_original(name: str, shape: tuple[int, ...]) -> None:
    spec = registry.DETECTORS["mtcnn"]
    original = create_session(packaged_file(name), threads=1)
    adapted = create_session(mtcnn_onnx.mtcnn_model(name), threads=1)
    assert [i.name for i in adapted.get_inputs()] == [mtcnn_onnx.INPUT_NAME]
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    # what the shipped graphs want: RGB, (x - mean) * scale, the spatial axes swapped
    x = ((image[..., ::-1].astype(np.float32) - spec.pixel_mean) * spec.pixel_scale).transpose(0, 2, 1, 3).copy()
    expected = original.run(None, {original.get_inputs()[0].name: x})
    got = adapted.run(None, {mtcnn_onnx.INPUT_NAME: image})
    assert len(got) == len(expected) >= 2
    for e, g in zip(expected, got, strict=True):
        e = e.transpose(0, 2, 1, 3) if e.ndim == 4 else e
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_adapting_leaves_the_input_model_alone() -> None:
    import onnx

    model = onnx.load(str(packaged_file("mtcnn_pnet")))
    before = model.SerializeToString()
    mtcnn_onnx.adapt_mtcnn_graph(model)
    assert model.SerializeToString() == before


def test_only_mtcnn_networks() -> None:
    with pytest.raises(ModelError, match="not an MTCNN network"):
        mtcnn_onnx.mtcnn_model("facenet_pb")


def test_a_graph_of_another_shape_is_refused() -> None:
    import onnx

    facenet_like = onnx.load(str(packaged_file("mtcnn_pnet")))
    del facenet_like.graph.node[0]  # no input Transpose any more
    with pytest.raises(ModelError, match="start with a Transpose"):
        mtcnn_onnx.adapt_mtcnn_graph(facenet_like)
