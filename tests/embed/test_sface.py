"""SFace on ArcFace-aligned chips: the embedder, its alignment, and its calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.align import ARCFACE_TEMPLATE_112, warp_to_template
from facesense.embed import make_embedder
from facesense.embed.dlib import DlibResNetEmbedder
from facesense.embed.fusion import FusedEmbedder
from facesense.embed.sface import SFaceEmbedder
from facesense.errors import ConfigError
from facesense.imageio import load_image
from facesense.match import make_matcher
from facesense.models import registry
from facesense.types import Faces

PAIRS_PER_CLASS = 40


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir: Path, shared_cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """SFace distances of the first LFW pairs of fold 1: (same-person, different-person)."""
    from facesense.detect import make_detector
    from facesense.eval.lfw import lfw_image_path, read_pairs, select_central_face

    pairs = read_pairs(lfw_dir / "pairs_folds1-5.txt")
    same_idx = np.flatnonzero(pairs.same)[:PAIRS_PER_CLASS]
    diff_idx = np.flatnonzero(~pairs.same)[:PAIRS_PER_CLASS]
    detector, embedder = make_detector(use="image"), SFaceEmbedder()
    cache: dict[tuple[str, int], np.ndarray] = {}

    def emb(key: tuple[str, int]) -> np.ndarray:
        if key not in cache:
            image = load_image(lfw_image_path(lfw_dir, key))
            faces = detector.detect(image)
            i = select_central_face(faces, (image.shape[1], image.shape[0]))
            assert i is not None, key
            cache[key] = embedder.embed(image, faces[[i]]).embeddings[0]
        return cache[key]

    def dist(idx: np.ndarray) -> np.ndarray:
        return np.array([np.linalg.norm(emb(pairs.left[i]) - emb(pairs.right[i])) for i in idx])

    return dist(same_idx), dist(diff_idx)


def test_same_and_different_people_separate_on_real_lfw_pairs(lfw_pairs: tuple[np.ndarray, np.ndarray]) -> None:
    same, diff = lfw_pairs
    assert len(same) == len(diff) == PAIRS_PER_CLASS
    # the impostor median measured on WIDER faces (other people, other photos) is typical of LFW's different pairs
    median = registry.embedder_spec("sface").impostor_median
    assert median is not None and abs(np.median(diff) - median) < 0.15
    assert np.median(same) < 0.75 * np.median(diff)
    # best single threshold over these 80 pairs
    thresholds = np.sort(np.concatenate([same, diff]))
    accuracy = max(np.mean(np.concatenate([same <= t, diff > t])) for t in thresholds)
    assert accuracy >= 0.95
    # and the calibrated raw threshold (from the whole LFW run) gets most of them right
    raw = registry.calibration(SFaceEmbedder().model_id).raw_threshold
    assert np.mean(same <= raw) >= 0.85 and np.mean(diff > raw) >= 0.95


def test_embeddings_are_unit_128d_and_the_id_is_derived() -> None:
    e = make_embedder("sface")
    assert isinstance(e, SFaceEmbedder) and e.dim == 128
    assert e.model_id == registry.embedder_spec("sface").model_id() == "sface-2021dec/arcface112"
    chips = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    out = e.embed_chips(chips)
    assert out.shape == (3, 128) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # batching does not change a row
    assert np.abs(SFaceEmbedder(batch_size=1).embed_chips(chips) - out).max() < 1e-5


def test_chips_put_the_landmarks_on_arcfaces_template() -> None:
    """A face drawn at a known similarity of the template is warped back onto it."""
    import cv2

    theta, scale, shift = np.deg2rad(-15), 2.3, np.array([80.0, 40.0])
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = ARCFACE_TEMPLATE_112 @ rot.T + shift
    image = np.zeros((420, 420, 3), np.uint8)
    for x, y in pts:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    faces = Faces(xyxy=np.array([[0, 0, 400, 400]], np.float32), scores=np.ones(1, np.float32), landmarks=pts[None].astype(np.float32))
    chip = SFaceEmbedder().chips(image, faces)[0]
    assert chip.shape == (112, 112, 3)
    assert np.array_equal(chip, warp_to_template(image, pts[None], ARCFACE_TEMPLATE_112, 112)[0])
    for x, y in ARCFACE_TEMPLATE_112:
        assert chip[round(y), round(x)].min() > 200
    assert chip[2, 2].max() == 0


def test_registry_entry_is_complete() -> None:
    spec = registry.embedder_spec("sface")
    assert spec.weights in registry.MODELS and spec.input_size_px == 112 and spec.dim == 128
    assert "Apache-2.0" in spec.licence and "ARCFACE_TEMPLATE_112" in str(spec.crop)
    assert spec.impostor_median is not None and 1.0 < spec.impostor_median < 1.5
    cal = registry.calibration(spec.model_id())
    assert cal.norm.impostor_quantiles[-1][1] > cal.threshold


def test_an_uncalibrated_model_is_refused_not_guessed() -> None:
    """A new id (here SFace fused with dlib at weights nobody measured) has no threshold:
    make_matcher(threshold="auto") refuses it and names the calibration command."""
    odd = FusedEmbedder([SFaceEmbedder(), DlibResNetEmbedder()], scales=[1.0, 1.0])
    assert registry.find_calibration(odd.model_id) is None
    with pytest.raises(ConfigError, match=r"no calibration for model 'fusion\(sface-2021dec/arcface112@0\.500.*facesense eval calibrate"):
        make_matcher(model_id=odd.model_id, threshold="auto")
    # a numeric threshold is the explicit way out
    assert make_matcher(model_id=odd.model_id, threshold=0.5).threshold == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SFaceEmbedder(batch_size=0), "batch_size"),
        (lambda: SFaceEmbedder(threads=0), "threads"),
        (lambda: SFaceEmbedder().embed_chips(np.zeros((1, 150, 150, 3), np.uint8)), r"\(N, 112, 112, 3\)"),
        (lambda: SFaceEmbedder().embed_chips(np.zeros((1, 112, 112, 3), np.float32)), "dtype uint8"),
        (lambda: make_embedder("sface", precision="fp32"), "the sface embedder has none"),
        (lambda: make_embedder("sfac"), "did you mean 'sface'"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        call()


def test_no_faces_gives_empty_embeddings() -> None:
    image = np.zeros((60, 60, 3), np.uint8)
    assert SFaceEmbedder().embed(image, Faces.empty()).embeddings.shape == (0, 128)
    assert SFaceEmbedder().embed_chips(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 128)
