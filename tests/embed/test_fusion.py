"""dlib's ResNet on MTCNN landmarks, the dlib + SFace fusion that is the default embedder, and the
FaceNet + dlib fusion that was (``facenet+dlib``, the fusion machinery's longest-standing user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.align import DLIB_CHIP_TEMPLATE_150, warp_to_template
from facesense.embed import make_embedder
from facesense.embed.dlib import DlibResNetEmbedder
from facesense.embed.facenet import FaceNetEmbedder
from facesense.embed.fusion import FusedEmbedder
from facesense.embed.sface import SFaceEmbedder
from facesense.errors import ConfigError
from facesense.imageio import load_image
from facesense.models.registry import CALIBRATIONS, IMPOSTOR_MEDIANS, calibration
from facesense.types import Faces


@pytest.fixture(scope="module")
def people(examples_dir: Path, shared_cache: Path) -> dict[str, tuple[np.ndarray, Faces]]:
    from facesense.detect.mtcnn import MTCNNDetector

    train = examples_dir / "knn_examples" / "train"
    det = MTCNNDetector()
    out = {}
    for key, path in {
        "obama": train / "obama" / "obama.jpg",
        "obama2": train / "obama" / "obama2.jpg",
        "biden": train / "biden" / "biden.jpg",
        "kit": train / "kit_harington" / "john1.jpeg",
    }.items():
        image = load_image(path)
        faces = det.detect(image)
        assert len(faces) >= 1, path
        out[key] = (image, faces[faces.scores == faces.scores.max()])
    return out


def _emb(embedder, people, key) -> np.ndarray:
    image, faces = people[key]
    return embedder.embed(image, faces).embeddings[0]


def test_dlib_embedder_separates_people(people) -> None:
    e = DlibResNetEmbedder()
    obama, obama2, biden, kit = (_emb(e, people, k) for k in ("obama", "obama2", "biden", "kit"))
    assert obama.shape == (128,) and np.linalg.norm(obama) == pytest.approx(1.0, abs=1e-5)
    same = np.linalg.norm(obama - obama2)
    assert same < 0.40 < min(np.linalg.norm(obama - biden), np.linalg.norm(obama - kit))


def test_template_chips_agree_with_dlibs_own_chips(people) -> None:
    """Our landmark warp puts the face where dlib's shape predictor would."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is needed to compare with dlib")
    import face_recognition_models

    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    e = DlibResNetEmbedder()
    for key in ("obama", "biden", "kit"):
        image, faces = people[key]
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        x1, y1, x2, y2 = (int(v) for v in faces.xyxy[0])
        own = dlib.get_face_chip(rgb, predictor(rgb, dlib.rectangle(x1, y1, x2, y2)), 150, 0.25)
        ours = e.chips(image, faces)[0][:, :, ::-1]
        a, b = e.embed_chips(own[None, :, :, ::-1].copy())[0], e.embed_chips(ours[None, :, :, ::-1].copy())[0]
        assert np.linalg.norm(a - b) < 0.2, key  # same person ~0.3, different people ~0.55


OLD = "facenet+dlib"  # the default until issue 15: the FaceNet options below need a FaceNet part


@pytest.mark.parametrize(("kind", "dim"), [(None, 256), (OLD, 640)])
def test_the_default_fusion_and_the_old_one_are_calibrated(people, kind: str | None, dim: int) -> None:
    e = make_embedder() if kind is None else make_embedder(kind)
    assert isinstance(e, FusedEmbedder) and e.dim == dim
    assert e.model_id in CALIBRATIONS
    raw = calibration(e.model_id).raw_threshold
    obama, obama2, biden, kit = (_emb(e, people, k) for k in ("obama", "obama2", "biden", "kit"))
    assert np.linalg.norm(obama) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(obama - obama2) < raw < min(np.linalg.norm(obama - biden), np.linalg.norm(biden - kit))


def test_fused_distance_weighs_each_model_by_its_impostor_scale() -> None:
    rng = np.random.default_rng(0)

    def unit(n: int, d: int) -> np.ndarray:
        x = rng.normal(size=(n, d))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    class Part:
        def __init__(self, model_id: str, dim: int) -> None:
            self.model_id, self.dim = model_id, dim

    fused = FusedEmbedder([Part("a", 4), Part("b", 3)], scales=[2.0, 0.5])
    assert fused.weights == pytest.approx((0.2, 0.8))
    assert fused.model_id == "fusion(a@0.200+b@0.800)"
    a, b = unit(2, 4), unit(2, 3)
    f = fused.fuse([a, b])
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0)
    expected = (np.sum((a[0] - a[1]) ** 2) / 4.0 + np.sum((b[0] - b[1]) ** 2) / 0.25) / (1 / 4.0 + 1 / 0.25)
    assert np.sum((f[0] - f[1]) ** 2) == pytest.approx(expected)


def test_default_weights_come_from_the_measured_medians() -> None:
    e = make_embedder()
    assert e.scales == (IMPOSTOR_MEDIANS[e.parts[0].model_id], IMPOSTOR_MEDIANS[e.parts[1].model_id])
    assert isinstance(e.parts[0], DlibResNetEmbedder) and isinstance(e.parts[1], SFaceEmbedder)
    assert e.weights == pytest.approx((0.710, 0.290), abs=5e-4)  # 1/0.550 : 1/1.347


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_embedder("arcface"), "unknown embedder 'arcface'"),
        (lambda: make_embedder("dlib+sfcae"), "did you mean 'dlib\\+sface'"),
        (lambda: make_embedder(bakend="opencv"), "unknown embedder option 'bakend' .did you mean 'backend'"),
        (lambda: make_embedder(backend="opencv"), "the dlib\\+sface embedder has none"),
        (lambda: make_embedder("dlib", backend="opencv"), "the dlib embedder has none"),
        (lambda: FusedEmbedder([FaceNetEmbedder()]), "at least two"),
        (lambda: FusedEmbedder([FaceNetEmbedder(), FaceNetEmbedder()], scales=[1.0]), "expected 2 positive scales"),
        (lambda: DlibResNetEmbedder(batch_size=0), "batch_size"),
        (lambda: DlibResNetEmbedder().embed_chips(np.zeros((1, 160, 160, 3), np.uint8)), r"\(N, 150, 150, 3\)"),
    ],
)
def test_bad_configuration_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_no_faces_gives_empty_embeddings() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    assert make_embedder().embed(image, Faces.empty()).embeddings.shape == (0, 256)
    assert make_embedder(OLD).embed(image, Faces.empty()).embeddings.shape == (0, 640)
    assert DlibResNetEmbedder().embed(image, Faces.empty()).embeddings.shape == (0, 128)


def test_warp_to_template_puts_landmarks_on_the_template() -> None:
    """A face drawn at a known similarity of the template is warped back onto it."""
    import cv2

    size = 150
    theta, scale, shift = np.deg2rad(20), 1.7, np.array([60.0, 35.0])
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = DLIB_CHIP_TEMPLATE_150 @ rot.T + shift
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in pts:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    chip = warp_to_template(image, pts[None], DLIB_CHIP_TEMPLATE_150, size)[0]
    assert chip.shape == (size, size, 3)
    for x, y in DLIB_CHIP_TEMPLATE_150:
        assert chip[round(y), round(x)].min() > 200  # each dot landed on its template point
    assert chip[5, 5].max() == 0


def test_merged_session_gives_the_parts_embeddings(people) -> None:
    """One merged ONNX Runtime graph (the fast path) = the parts run one by one."""
    merged = make_embedder()
    separate = FusedEmbedder(list(make_embedder().parts), merge=False)
    image, faces = people["obama"]
    both = faces[np.array([True])]
    a = merged.embed(image, both).embeddings
    b = separate.embed(image, both).embeddings
    assert merged.merged is True and separate.merged is False
    assert np.abs(a - b).max() < 1e-5


def test_opencv_facenet_is_fused_without_merging(people) -> None:
    fused = make_embedder(OLD, backend="opencv")
    image, faces = people["biden"]
    out = fused.embed(image, faces).embeddings
    assert fused.merged is False and out.shape == (1, 640)
    assert np.linalg.norm(out - make_embedder(OLD).embed(image, faces).embeddings) < 0.05  # INT8 vs FP32 FaceNet


def test_merge_models_refuses_clashing_prefixes(tmp_path: Path) -> None:
    from facesense.errors import ModelError
    from facesense.models.runtime import merge_models

    with pytest.raises(ModelError, match="prefixes must differ"):
        merge_models([("a", tmp_path / "x.onnx"), ("a", tmp_path / "y.onnx")])
    with pytest.raises(ModelError, match="cannot read"):
        merge_models([("a", tmp_path / "missing.onnx"), ("b", tmp_path / "y.onnx")])


def test_a_custom_crop_changes_embeddings_and_model_id(people) -> None:
    """Why the crop is part of the id: the same face, cut another way, moves by about a
    same-person distance (0.5 here against a raw FaceNet threshold of 0.85)."""
    from facesense.align import CropConfig

    image, faces = people["obama"]
    default, wide = FaceNetEmbedder(), FaceNetEmbedder(crop=CropConfig(margin_px=0, margin_ratio=0.2))
    moved = np.linalg.norm(default.embed(image, faces).embeddings - wide.embed(image, faces).embeddings)
    assert moved > 0.3
    assert wide.model_id != default.model_id
    # the fusion refuses a part whose impostor scale was measured for another crop
    with pytest.raises(ConfigError, match=r"no impostor scale measured for facenet-20180408-102900/fixed/box160m0\.2\+0"):
        make_embedder(OLD, crop=CropConfig(margin_px=0, margin_ratio=0.2))


def test_merged_model_is_cached_and_a_damaged_cache_is_rebuilt(people) -> None:
    """The merged graph is written once to the model cache and loaded from the file;
    a truncated cached merge is rebuilt instead of breaking the embedder."""
    from facesense.models.runtime import merged_model_path

    first = make_embedder()
    image, faces = people["obama"]
    want = first.embed(image, faces).embeddings
    parts = [(f"part{i}", p.onnx_path()) for i, p in enumerate(first.parts)]
    path = merged_model_path(parts)
    assert path.is_file() and merged_model_path(parts) == path
    stamp = path.stat().st_mtime_ns
    second = make_embedder()
    second.embed(image, faces)
    assert path.stat().st_mtime_ns == stamp  # reused, not merged again
    path.write_bytes(path.read_bytes()[:1000])
    third = make_embedder()
    got = third.embed(image, faces).embeddings
    assert third.merged is True and path.stat().st_size > 1_000_000
    assert np.abs(got - want).max() < 1e-6


@pytest.mark.parametrize("kind", ["facenet+dlib+sface", "dlib+sface", "facenet+sface"])
def test_fusions_with_sface_run_merged_and_equal_their_parts(people, kind: str) -> None:
    """Every SFace fusion: scales are the registry's WIDER medians, one merged session,
    the same embeddings as the parts run one by one, and calibrated."""
    from facesense.embed.sface import SFaceEmbedder

    merged = make_embedder(kind)
    names = kind.split("+")
    assert [type(p) for p in merged.parts] == [{"facenet": FaceNetEmbedder, "dlib": DlibResNetEmbedder, "sface": SFaceEmbedder}[n] for n in names]
    assert merged.scales == tuple(IMPOSTOR_MEDIANS[p.model_id] for p in merged.parts)
    assert merged.model_id in CALIBRATIONS
    separate = FusedEmbedder(list(make_embedder(kind).parts), merge=False)
    image, faces = people["obama"]
    a, b = merged.embed(image, faces).embeddings, separate.embed(image, faces).embeddings
    assert merged.merged is True and separate.merged is False
    assert a.shape == (len(faces), sum(p.dim for p in merged.parts))
    assert np.abs(a - b).max() < 1e-5
    raw = calibration(merged.model_id).raw_threshold
    obama, obama2, biden, kit = (_emb(merged, people, k) for k in ("obama", "obama2", "biden", "kit"))
    assert np.linalg.norm(obama - obama2) < raw < min(np.linalg.norm(obama - biden), np.linalg.norm(biden - kit))


def test_calibration_splits_one_merged_run_into_exact_parts(people) -> None:
    """eval calibrate runs the three networks in one session and splits the result; the
    parts and the fusions rebuilt from them equal what the embedders give themselves."""
    from facesense.eval.calibrate import NETWORKS, fuse_parts, network_embedder, split_parts

    image, faces = people["kit"]
    networks = network_embedder()
    parts = split_parts(networks.embed(image, faces).embeddings, [p.dim for p in networks.parts])
    assert networks.merged is True and len(parts) == len(NETWORKS) == 3
    for key, part in zip(NETWORKS, parts, strict=True):
        assert np.abs(part - make_embedder(key).embed(image, faces).embeddings).max() < 1e-5, key
    three = make_embedder("facenet+dlib+sface")
    rebuilt = fuse_parts(parts, three.scales)
    assert np.abs(rebuilt - three.embed(image, faces).embeddings).max() < 1e-5
    with pytest.raises(ConfigError, match=r"expected \(N, 768\)"):
        split_parts(np.zeros((1, 640), np.float32), [512, 128, 128])


def test_a_gallery_of_another_embedder_is_refused_with_the_reembed_pointer(examples_dir: Path, tmp_path: Path, shared_cache: Path) -> None:
    """Switching embedder (here from the default to the three-way fusion) never mixes
    embeddings: the gallery is refused with the command that recomputes it, and after
    `reembed` it serves the new model."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.enroll import Enroller, reembed
    from facesense.errors import ModelMismatchError
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.recognize import fit_matcher

    photo = examples_dir / "knn_examples" / "train" / "obama" / "obama.jpg"
    gallery = SQLiteGallery(tmp_path / "people.db")
    Enroller(gallery, FaceAnalyzer()).enroll_person("obama", [photo])
    assert gallery.model_id == make_embedder().model_id
    three = FaceAnalyzer(embedder=make_embedder("facenet+dlib+sface"))
    with pytest.raises(ModelMismatchError, match=r"run `facesense reembed --db .*people\.db`"):
        fit_matcher(gallery, three.model_id)
    with pytest.raises(ModelMismatchError, match="reembed"):
        Enroller(gallery, three).enroll_person("obama", [photo])
    assert reembed(gallery, three).reembedded == 1
    assert gallery.model_id == three.model_id
    fit_matcher(gallery, three.model_id)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--far", "0.05"], "far must be one of the protocol's FAR targets 0.001, 0.01, 0.02, got 0.05"),
        ([], "need people with >= 2 images and people with 1 image"),
        (["--embedder", "sfase"], "did you mean 'sface'"),
    ],
)
def test_calibrate_refuses_bad_input_in_one_line_before_any_model_runs(tmp_path: Path, extra: list[str], message: str) -> None:
    from click.testing import CliRunner

    from facesense.cli import main

    (tmp_path / "lfw" / "Only_One").mkdir(parents=True)
    (tmp_path / "wider").mkdir()
    args = ["eval", "calibrate", "--images", str(tmp_path / "lfw"), "--wider", str(tmp_path / "wider"), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_part_view_gives_that_part_alone(people) -> None:
    """The FaceNet columns of the fused vector, normalised, are FaceNet's own embedding."""
    from facesense.embed import make_embedder as make
    from facesense.embed.fusion import FusionPart

    fused = make_embedder(OLD)
    facenet, dlib = fused.parts
    view = fused.part_view(facenet.model_id)
    assert isinstance(view, FusionPart) and view.model_id == facenet.model_id and view.dim == 512
    image, faces = people["kit"]
    alone = make("facenet").embed(image, faces).embeddings
    got = view.embed(image, faces).embeddings
    assert got.shape == (len(faces), 512)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((got * alone).sum(axis=1).min()) > 0.9999
    dlib_view = fused.part_view(dlib.model_id)
    assert dlib_view is not None and dlib_view.offset == 512 and dlib_view.dim == 128
    assert fused.part_view("no-such-model") is None
    default = make_embedder()
    sface_view = default.part_view(default.parts[1].model_id)
    assert sface_view is not None and (sface_view.offset, sface_view.dim) == (128, 128)
    got = sface_view.embed(image, faces).embeddings
    assert float((got * make("sface").embed(image, faces).embeddings).sum(axis=1).min()) > 0.9999
    assert default.part_view(facenet.model_id) is None  # the default has no FaceNet
