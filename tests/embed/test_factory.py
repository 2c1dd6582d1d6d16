"""make_embedder: the one way the library builds an embedder, and the ids it derives."""

from __future__ import annotations

import pytest

import facesense.embed
import facesense.embed.fusion
from facesense.embed import (
    DEFAULT_EMBEDDER,
    DlibResNetEmbedder,
    EmbedderKind,
    FaceNetEmbedder,
    FusedEmbedder,
    SFaceEmbedder,
    make_embedder,
)
from facesense.errors import ConfigError
from facesense.models import registry

DEFAULT_IDS = {
    "dlib+sface": "fusion(dlib-resnet-v1/mtcnn5@0.710+sface-2021dec/arcface112@0.290)",
    "facenet+dlib": "fusion(facenet-20180408-102900/fixed@0.281+dlib-resnet-v1/mtcnn5@0.719)",
    "facenet": "facenet-20180408-102900/fixed",
    "dlib": "dlib-resnet-v1/mtcnn5",
    "sface": "sface-2021dec/arcface112",
}


@pytest.mark.parametrize(("kind", "model_id"), DEFAULT_IDS.items())
def test_default_model_ids_are_unchanged(kind: str, model_id: str) -> None:
    """Existing galleries store these exact strings."""
    embedder = make_embedder(kind)
    assert embedder.model_id == model_id
    assert registry.EMBEDDERS[kind].model_id() == model_id


def test_kinds_build_the_registered_embedders() -> None:
    assert {k.value for k in EmbedderKind} == set(registry.EMBEDDERS)
    assert DEFAULT_EMBEDDER is EmbedderKind.DLIB_SFACE
    fused = make_embedder(threads=1)
    assert isinstance(fused, FusedEmbedder) and fused.threads == 1
    assert fused.model_id == DEFAULT_IDS["dlib+sface"] == registry.DEFAULT_MODEL_ID
    assert [type(p) for p in fused.parts] == [DlibResNetEmbedder, SFaceEmbedder]
    assert all(p.threads == 1 for p in fused.parts)
    assert fused.scales == (registry.IMPOSTOR_MEDIANS[DEFAULT_IDS["dlib"]], registry.IMPOSTOR_MEDIANS[DEFAULT_IDS["sface"]])
    old = make_embedder("facenet+dlib", threads=1)
    assert isinstance(old, FusedEmbedder) and [type(p) for p in old.parts] == [FaceNetEmbedder, DlibResNetEmbedder]
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


@pytest.mark.parametrize("name", ["fusion", "FUSION", " fusion "])
def test_the_old_defaults_name_still_means_facenet_plus_dlib(name: str) -> None:
    """Configs and scripts written while ``fusion`` was the default keep their gallery's model."""
    from facesense.choices import parse_choice

    assert parse_choice(EmbedderKind, name, "embedder") is EmbedderKind.FACENET_DLIB
    assert make_embedder(name).model_id == DEFAULT_IDS["facenet+dlib"]
    with pytest.raises(ConfigError, match="unknown embedder 'fusoin'"):
        parse_choice(EmbedderKind, "fusoin", "embedder")


def test_facenet_options_are_refused_by_the_default_embedder() -> None:
    """The default has no FaceNet part: a FaceNet option that would change something is an error."""
    with pytest.raises(ConfigError, match="is a FaceNet option; the dlib\\+sface embedder has none"):
        make_embedder(precision="fp32")
    assert make_embedder(backend="auto").model_id == DEFAULT_IDS["dlib+sface"]
