"""make_embedder: the one way the library builds an embedder, and the ids it derives."""

from __future__ import annotations

import pytest

import facesense.embed
import facesense.embed.fusion
from facesense.embed import DlibResNetEmbedder, EmbedderKind, FaceNetEmbedder, FusedEmbedder, make_embedder
from facesense.errors import ConfigError
from facesense.models import registry

DEFAULT_IDS = {
    "fusion": "fusion(facenet-20180408-102900/fixed@0.281+dlib-resnet-v1/mtcnn5@0.719)",
    "facenet": "facenet-20180408-102900/fixed",
    "dlib": "dlib-resnet-v1/mtcnn5",
}


@pytest.mark.parametrize(("kind", "model_id"), DEFAULT_IDS.items())
def test_default_model_ids_are_unchanged(kind: str, model_id: str) -> None:
    """Existing galleries store these exact strings."""
    embedder = make_embedder(kind)
    assert embedder.model_id == model_id
    assert registry.EMBEDDERS[kind].model_id() == model_id


def test_kinds_build_the_registered_embedders() -> None:
    assert {k.value for k in EmbedderKind} == set(registry.EMBEDDERS)
    fused = make_embedder(threads=1)
    assert isinstance(fused, FusedEmbedder) and fused.threads == 1
    assert [type(p) for p in fused.parts] == [FaceNetEmbedder, DlibResNetEmbedder]
    assert all(p.threads == 1 for p in fused.parts)
    assert fused.scales == (registry.IMPOSTOR_MEDIANS[DEFAULT_IDS["facenet"]], registry.IMPOSTOR_MEDIANS[DEFAULT_IDS["dlib"]])
    facenet = make_embedder(EmbedderKind.FACENET, backend="opencv", precision="fp32")
    assert isinstance(facenet, FaceNetEmbedder) and facenet.backend.value == "opencv"
    assert isinstance(make_embedder("DLIB"), DlibResNetEmbedder)


def test_dlib_accepts_facenet_defaults_only() -> None:
    """The CLI passes backend="auto" whatever the embedder; that changes nothing for dlib."""
    assert isinstance(make_embedder("dlib", backend="auto", precision="int8"), DlibResNetEmbedder)
    with pytest.raises(ConfigError, match="precision='fp32' is a FaceNet option"):
        make_embedder("dlib", precision="fp32")


def test_old_import_paths_still_work() -> None:
    assert facesense.embed.fusion.make_embedder is make_embedder
    assert facesense.embed.fusion.EmbedderKind is EmbedderKind
    assert facesense.embed.make_embedder is make_embedder
    with pytest.raises(AttributeError):
        _ = facesense.embed.fusion.no_such_name  # type: ignore[attr-defined]
