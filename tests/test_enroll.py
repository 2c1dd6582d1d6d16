"""Enrollment checks and outcomes, with a fake analyzer on synthetic images, and the
real models on the knn_examples photos.

The fake "detector" finds bright rectangles on a black background; the fake
"embedder" turns a rectangle's mean colour into a unit vector, so one colour is one
person. Rectangles carry a random texture so they look sharp unless blurred.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesense.enroll import (
    DEFAULT_MIN_SHARPNESS,
    EnrollConfig,
    Enroller,
    EnrollSummary,
    Skipped,
    SkipReason,
    reembed,
    thumbnail_jpeg,
)
from facesense.errors import (
    ConfigError,
    EnrollmentError,
    ImageError,
    ModelMismatchError,
    SourceError,
)
from facesense.gallery import SQLiteGallery
from facesense.quality import sharpness
from facesense.types import Faces

FAKE_MODEL = "fake-colour/v1"


class FakeAnalyzer:
    """Detects bright rectangles; embeds their mean colour. Same interface as FaceAnalyzer."""

    def __init__(self, model_id: str = FAKE_MODEL) -> None:
        self.model_id = model_id
        self.calls = 0

    def detect(self, image: np.ndarray) -> Faces:
        import cv2

        self.calls += 1
        mask = (image.max(axis=2) > 20).astype(np.uint8)
        _n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        boxes = [
            (x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= 16
        ]
        if not boxes:
            return Faces.empty()
        xyxy = np.array(boxes, np.float32)
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        lm = np.repeat(centre[:, None, :], 5, axis=1)
        return Faces(xyxy=xyxy, scores=np.full(len(boxes), 0.99), landmarks=lm)

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        rows = []
        for x1, y1, x2, y2 in faces.xyxy.astype(int):
            mean = image[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)
            v = np.concatenate([mean / 255.0, [0.1]]).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return faces.replace(embeddings=np.array(rows, np.float32).reshape(len(faces), 4))

    def analyze(self, image: np.ndarray) -> Faces:
        return self.embed(image, self.detect(image))


COLOURS = {
    "red": (30, 30, 220),
    "green": (30, 220, 30),
    "blue": (220, 30, 30),
    "yellow": (30, 220, 220),
}


def face_image(
    path: Path, boxes: list[tuple[int, int, int, tuple[int, int, int]]], *, blur: float = 0.0, seed: int = 0, size: int = 240
) -> Path:
    """Write a black image with textured squares ``(x, y, side, bgr)`` and return its path."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    for x, y, side, bgr in boxes:
        tex = rng.integers(-25, 26, size=(side, side, 1))
        img[y : y + side, x : x + side] = np.clip(np.array(bgr)[None, None, :] + tex, 25, 255).astype(np.uint8)
    if blur:
        inner = img.copy()
        img = cv2.GaussianBlur(inner, (0, 0), blur)
        img[inner.max(axis=2) <= 20] = 0  # keep the background black so the box stays put
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def one_face(path: Path, colour: str, *, side: int = 100, seed: int = 0, blur: float = 0.0) -> Path:
    return face_image(path, [(60, 50, side, COLOURS[colour])], seed=seed, blur=blur)


@pytest.fixture
def gallery(tmp_path: Path):
    with SQLiteGallery(tmp_path / "g.db") as g:
        yield g


@pytest.fixture
def people_dir(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    for name in ("red", "green"):
        for i in range(2):
            one_face(root / name / f"{i}.png", name, seed=i)
    return root


def test_sharpness_tells_sharp_from_blurred(tmp_path: Path) -> None:
    import cv2

    sharp = cv2.imread(str(one_face(tmp_path / "s.png", "red")))
    soft = cv2.imread(str(one_face(tmp_path / "b.png", "red", blur=3.0)))
    box = (60, 50, 160, 150)
    assert sharpness(sharp, box) > 4 * DEFAULT_MIN_SHARPNESS
    assert sharpness(soft, box) < DEFAULT_MIN_SHARPNESS


def test_enroll_folder(gallery: SQLiteGallery, people_dir: Path) -> None:
    summary = Enroller(gallery, FakeAnalyzer()).enroll_folder(people_dir)
    assert len(summary.added) == 4 and summary.skipped == ()
    assert [(p.name, p.n_samples) for p in gallery.people()] == [("green", 2), ("red", 2)]
    s = gallery.samples("red")[0]
    assert s.model_id == FAKE_MODEL and s.xyxy == (60.0, 50.0, 160.0, 150.0)
    assert s.thumbnail_jpeg[:2] == b"\xff\xd8" and Path(s.source_path or "").is_file()
    assert summary.table() == [
        {"person": "green", "added": 2, **{r.value: 0 for r in SkipReason}},
        {"person": "red", "added": 2, **{r.value: 0 for r in SkipReason}},
    ]


def test_enrolling_twice_adds_nothing_new(gallery: SQLiteGallery, people_dir: Path) -> None:
    enroller = Enroller(gallery, FakeAnalyzer())
    enroller.enroll_folder(people_dir)
    again = enroller.enroll_folder(people_dir)
    assert again.added == ()
    assert {s.reason for s in again.skipped} == {SkipReason.DUPLICATE}
    assert len(gallery.samples()) == 4


def test_same_bytes_under_two_names_in_one_run_is_a_duplicate(gallery: SQLiteGallery, tmp_path: Path) -> None:
    a = one_face(tmp_path / "a.png", "red")
    b = tmp_path / "copy.png"
    b.write_bytes(a.read_bytes())
    summary = Enroller(gallery, FakeAnalyzer()).enroll_person("red", [a, b, a])
    assert len(summary.added) == 1
    assert [s.reason for s in summary.skipped] == [SkipReason.DUPLICATE, SkipReason.DUPLICATE]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: face_image(p, []), SkipReason.NO_FACE),
        (lambda p: face_image(p, [(10, 10, 80, COLOURS["red"]), (130, 130, 80, COLOURS["blue"])]), SkipReason.SEVERAL_FACES),
        (lambda p: one_face(p, "red", side=30), SkipReason.TOO_SMALL),
        (lambda p: one_face(p, "red", blur=3.0), SkipReason.TOO_BLURRY),
    ],
)
def test_quality_gates(gallery: SQLiteGallery, tmp_path: Path, make, reason: SkipReason) -> None:
    good = one_face(tmp_path / "good.png", "red", seed=5)
    bad = make(tmp_path / "bad.png")
    summary = Enroller(gallery, FakeAnalyzer()).enroll_person("red", [good, bad])
    assert [a.path for a in summary.added] == [str(good.resolve())]
    assert [(s.path, s.reason) for s in summary.skipped] == [(str(bad.resolve()), reason)]
    assert summary.skipped[0].detail
    assert gallery.person("red").n_samples == 1


def test_small_background_faces_do_not_count(gallery: SQLiteGallery, tmp_path: Path) -> None:
    photo = face_image(tmp_path / "bg.png", [(20, 20, 120, COLOURS["red"]), (180, 190, 40, COLOURS["blue"])])
    summary = Enroller(gallery, FakeAnalyzer()).enroll_person("red", [photo])
    assert len(summary.added) == 1
    assert gallery.samples("red")[0].xyxy == (20.0, 20.0, 140.0, 140.0)
    strict = EnrollConfig(background_ratio=0.0)
    again = Enroller(gallery, FakeAnalyzer(), strict).enroll_person("blue", [photo])
    assert [s.reason for s in again.skipped] == [SkipReason.SEVERAL_FACES]


def test_weak_detections_do_not_count(gallery: SQLiteGallery, tmp_path: Path) -> None:
    class Doubtful(FakeAnalyzer):
        def detect(self, image: np.ndarray) -> Faces:
            faces = super().detect(image)
            return faces.replace(scores=np.full(len(faces), 0.8, np.float32))

    photo = one_face(tmp_path / "a.png", "red")
    summary = Enroller(gallery, Doubtful()).enroll_person("red", [photo])
    assert [s.reason for s in summary.skipped] == [SkipReason.NO_FACE]
    loose = EnrollConfig(min_detection_score=0.5)
    assert len(Enroller(gallery, Doubtful(), loose).enroll_person("red", [photo]).added) == 1


def test_gates_can_be_loosened(gallery: SQLiteGallery, tmp_path: Path) -> None:
    small = one_face(tmp_path / "small.png", "red", side=30)
    blurry = one_face(tmp_path / "blurry.png", "red", blur=3.0, seed=2)
    config = EnrollConfig(min_face_px=10, min_sharpness=0)
    summary = Enroller(gallery, FakeAnalyzer(), config).enroll_person("red", [small, blurry])
    assert len(summary.added) == 2


def test_person_without_usable_images_is_not_created(gallery: SQLiteGallery, tmp_path: Path) -> None:
    summary = Enroller(gallery, FakeAnalyzer()).enroll_person("ghost", [face_image(tmp_path / "empty.png", [])])
    assert summary.added == () and gallery.people() == []


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.write_text("not an image"),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 50),
    ],
)
def test_unreadable_file_is_skipped_and_strict_fails_before_any_write(gallery: SQLiteGallery, tmp_path: Path, write) -> None:
    good = one_face(tmp_path / "good.png", "red")
    bad = tmp_path / "bad.jpg"
    write(bad)
    analyzer = FakeAnalyzer()
    with pytest.raises(ImageError, match=r"bad\.jpg: .*; nothing was enrolled"):
        Enroller(gallery, analyzer, EnrollConfig(strict=True)).enroll_person("red", [good, bad])
    assert gallery.people() == []
    summary = Enroller(gallery, analyzer).enroll_person("red", [good, bad])  # the default skips it
    assert len(summary.added) == 1
    (skip,) = summary.skipped
    assert skip.reason is SkipReason.UNREADABLE and skip.path == str(bad.resolve())
    assert not skip.detail.startswith(str(bad))  # the path is in .path, not repeated in the detail
    assert summary.failure() is None


def test_missing_path_is_skipped_or_fails_strict(gallery: SQLiteGallery, tmp_path: Path) -> None:
    good = one_face(tmp_path / "good.png", "red")
    with pytest.raises(ImageError, match="no such file"):
        Enroller(gallery, FakeAnalyzer(), EnrollConfig(strict=True)).enroll_person("red", [good, tmp_path / "nope.jpg"])
    assert gallery.people() == []
    summary = Enroller(gallery, FakeAnalyzer()).enroll_person("red", [good, tmp_path / "nope.jpg"])
    assert len(summary.added) == 1
    assert [(s.reason, s.detail) for s in summary.skipped] == [(SkipReason.UNREADABLE, "no such file")]


@pytest.mark.parametrize(
    ("skipped", "error", "message"),
    [
        ([], None, None),
        ([SkipReason.DUPLICATE, SkipReason.NO_FACE], None, None),  # one photo is in the gallery already
        ([SkipReason.UNREADABLE], ImageError, r"^/p/0\.jpg: why; nothing was enrolled$"),
        ([SkipReason.NO_FACE], EnrollmentError, r"^/p/0\.jpg: why; nothing was enrolled$"),
        ([SkipReason.UNREADABLE, SkipReason.UNREADABLE], ImageError, "none of the 2 files is a readable image"),
        (
            [SkipReason.UNREADABLE, SkipReason.NO_FACE, SkipReason.NO_FACE],
            EnrollmentError,
            r"no usable face in any of the 3 images \(2 no_face, 1 unreadable\)",
        ),
    ],
)
def test_summary_failure_rule(skipped: list[SkipReason], error: type[Exception] | None, message: str | None) -> None:
    summary = EnrollSummary((), tuple(Skipped("p", f"/p/{i}.jpg", r, "why") for i, r in enumerate(skipped)))
    failure = summary.failure()
    if error is None:
        assert failure is None
    else:
        assert isinstance(failure, error) and message is not None
        assert re.search(message, str(failure)), str(failure)


def test_thumbnail_is_a_jpeg_or_an_error(tmp_path: Path) -> None:
    import cv2

    image = cv2.imread(str(one_face(tmp_path / "a.png", "red")))
    faces = FakeAnalyzer().detect(image)
    jpeg = thumbnail_jpeg(image, faces)
    thumb = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (96, 96, 3)
    with pytest.raises(ConfigError, match="needs a face"):
        thumbnail_jpeg(image, Faces.empty())


@pytest.mark.parametrize(
    ("layout", "error", "match"),
    [
        (None, EnrollmentError, "no such directory"),
        ("empty", EnrollmentError, "no images"),
        ("file", EnrollmentError, "not a directory"),
        ("loose", EnrollmentError, "no images in person folders"),
        ("unknown", ConfigError, "reserved"),
    ],
)
def test_bad_folders(gallery: SQLiteGallery, tmp_path: Path, layout: str | None, error, match: str) -> None:
    root = tmp_path / "root"
    if layout == "empty":
        (root / "alice").mkdir(parents=True)
    elif layout == "file":
        root = one_face(tmp_path / "x.png", "red")
    elif layout == "loose":
        one_face(root / "x.png", "red")
    elif layout == "unknown":
        one_face(root / "unknown" / "x.png", "red")
    with pytest.raises(error, match=match):
        Enroller(gallery, FakeAnalyzer()).enroll_folder(root)
    assert gallery.people() == []


def test_empty_dir_for_one_person(gallery: SQLiteGallery, tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    with pytest.raises(EnrollmentError, match="no image files"):
        Enroller(gallery, FakeAnalyzer()).enroll_person("red", [tmp_path / "none"])


def test_model_mismatch_is_refused_before_analysis(gallery: SQLiteGallery, people_dir: Path) -> None:
    Enroller(gallery, FakeAnalyzer()).enroll_folder(people_dir)
    other = FakeAnalyzer(model_id="other/v2")
    with pytest.raises(ModelMismatchError, match="reembed"):
        Enroller(gallery, other).enroll_folder(people_dir)
    assert other.calls == 0


def test_progress_callback(gallery: SQLiteGallery, people_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    Enroller(gallery, FakeAnalyzer()).enroll_folder(people_dir, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_reembed_swaps_model_and_keeps_people(gallery: SQLiteGallery, people_dir: Path) -> None:
    Enroller(gallery, FakeAnalyzer()).enroll_folder(people_dir)
    result = reembed(gallery, FakeAnalyzer(model_id="fake-colour/v2"))
    assert result.reembedded == 4 and result.dropped == ()
    assert gallery.model_id == "fake-colour/v2"
    assert [(p.name, p.n_samples) for p in gallery.people()] == [("green", 2), ("red", 2)]


def test_reembed_with_missing_source_changes_nothing_unless_dropping(gallery: SQLiteGallery, people_dir: Path) -> None:
    Enroller(gallery, FakeAnalyzer()).enroll_folder(people_dir)
    (people_dir / "red" / "0.png").unlink()
    (people_dir / "red" / "1.png").write_bytes(b"changed")
    with pytest.raises(EnrollmentError, match=r"gone.*and 1 more"):
        reembed(gallery, FakeAnalyzer(model_id="fake-colour/v2"))
    assert gallery.model_id == FAKE_MODEL and len(gallery.samples()) == 4
    result = reembed(gallery, FakeAnalyzer(model_id="fake-colour/v2"), drop_missing=True)
    assert result.reembedded == 2 and len(result.dropped) == 2
    assert [p.name for p in gallery.people()] == ["green"]


# --- camera (a video file stands in for the camera) ------------------------------------


def _video(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (240, 240))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_camera_keeps_only_good_frames(gallery: SQLiteGallery, tmp_path: Path) -> None:
    import cv2

    def frame(kind: str, seed: int) -> np.ndarray:
        p = tmp_path / f"f{seed}.png"
        if kind == "good":
            one_face(p, "blue", seed=seed)
        elif kind == "two":
            face_image(p, [(10, 10, 80, COLOURS["blue"]), (130, 130, 80, COLOURS["red"])], seed=seed)
        else:
            face_image(p, [], seed=seed)
        return cv2.imread(str(p))

    kinds = ["none", "two", "good", "good", "good", "none", "good", "good", "good", "good"]
    video = _video(tmp_path / "cam.avi", [frame(k, i) for i, k in enumerate(kinds)])
    summary = Enroller(gallery, FakeAnalyzer()).enroll_camera("blue", str(video), samples=3, min_gap_s=0.15)
    assert len(summary.added) == 3
    assert gallery.person("blue").n_samples == 3
    reasons = [s.reason for s in summary.skipped]
    assert reasons[:2] == [SkipReason.NO_FACE, SkipReason.SEVERAL_FACES]
    # Kept frames are at least min_gap_s (1.5 frames at 10 fps) apart.
    kept = [int(a.path.rsplit("frame", 1)[1]) for a in summary.added]
    assert all(b - a >= 2 for a, b in itertools.pairwise(kept))


def test_camera_enrollment_reads_any_video_source(gallery: SQLiteGallery, tmp_path: Path) -> None:
    from facesense.capture import CaptureConfig, VideoSource

    folder = tmp_path / "frames"
    for i in range(4):
        one_face(folder / f"{i}.png", "green", seed=i)
    source = VideoSource(folder, CaptureConfig(folder_fps=2.0))  # frames 0.5 s apart
    seen: list[tuple[int, int]] = []
    summary = Enroller(gallery, FakeAnalyzer()).enroll_camera(
        "green", source, samples=3, on_progress=lambda d, t: seen.append((d, t))
    )
    assert [a.path for a in summary.added] == [f"{folder}#frame{i}" for i in (1, 2, 3)]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert gallery.person("green").n_samples == 3


def test_camera_that_drops_out_ends_the_capture(gallery: SQLiteGallery, mjpeg_server, caplog) -> None:
    # The test camera sends flat grey frames: the fake detector sees no face, or the
    # whole flat frame as one (too blurry), so nothing can be kept.
    result: dict[str, EnrollSummary] = {}

    def run() -> None:
        result["summary"] = Enroller(gallery, FakeAnalyzer()).enroll_camera("grey", mjpeg_server.url, samples=2, min_gap_s=0.0)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while mjpeg_server.sent < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    mjpeg_server.stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "a lost camera must end the enrollment"
    summary = result["summary"]
    assert summary.added == () and summary.skipped
    assert {s.reason for s in summary.skipped} <= {SkipReason.NO_FACE, SkipReason.TOO_BLURRY}
    assert isinstance(summary.failure(), EnrollmentError)
    assert "dropped out; stopping the capture" in caplog.text
    assert gallery.people() == []


def test_bad_camera_index(gallery: SQLiteGallery) -> None:
    with pytest.raises(SourceError, match="cannot open camera"):
        Enroller(gallery, FakeAnalyzer()).enroll_camera("blue", 97, samples=1)
    assert gallery.people() == []


# --- kill -9 during a large enrollment ---------------------------------------------------

_KILL_SCRIPT = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("enroll_tests", {test_file!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
from facesense.gallery import SQLiteGallery
from facesense.enroll import EnrollConfig, Enroller
with SQLiteGallery({db!r}) as g:
    print("start", flush=True)
    Enroller(g, mod.FakeAnalyzer(), EnrollConfig(min_sharpness=0)).enroll_folder({root!r})
print("finished", flush=True)
"""


def test_kill_9_mid_enrollment_leaves_whole_people(tmp_path: Path) -> None:
    root = tmp_path / "many"
    colours = list(COLOURS.values())
    n_people, per_person = 40, 4
    for p in range(n_people):
        for i in range(per_person):
            bgr = colours[p % 4]
            one = face_image(root / f"p{p:03d}" / f"{i}.png", [(60, 50, 100, bgr)], seed=p * 10 + i, size=200)
            assert one.is_file()
    db = tmp_path / "killed.db"
    script = _KILL_SCRIPT.format(test_file=__file__, db=str(db), root=str(root))
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                    count = con.execute("SELECT count(*) FROM samples").fetchone()[0]
                    con.close()
                except sqlite3.Error:
                    count = 0
                if count >= 20:
                    break
            time.sleep(0.005)
        assert proc.poll() is None, f"enrollment ended before it could be killed: {log.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = con.execute("SELECT count(*) FROM people WHERE id NOT IN (SELECT person_id FROM samples)").fetchone()[0]
        assert orphans == 0
        bad_blobs = con.execute("SELECT count(*) FROM samples WHERE length(embedding) != 4 * dim").fetchone()[0]
        assert bad_blobs == 0
    finally:
        con.close()
    with SQLiteGallery(db, create=False) as g:
        people = g.people()
        n_samples = len(g.samples())
        emb = g.embeddings(FAKE_MODEL)
        # Killed part-way: some but not all of the photos made it.
        assert 20 <= n_samples < n_people * per_person
        assert all(p.n_samples >= 1 for p in people)
        assert len(emb) == n_samples and np.all(np.isfinite(emb.matrix))
        # Enrolling again picks up where it stopped, with no duplicates.
        summary = Enroller(g, FakeAnalyzer(), EnrollConfig(min_sharpness=0)).enroll_folder(root)
        assert len(summary.added) == n_people * per_person - n_samples
        assert {s.reason for s in summary.skipped} <= {SkipReason.DUPLICATE}
        assert len(g.samples()) == n_people * per_person


# --- the real models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer():
    from facesense.analyzer import FaceAnalyzer

    return FaceAnalyzer()


def test_real_enroll_checks_real_photos(tmp_path: Path, examples_dir: Path, analyzer) -> None:
    # The small photos only (the CLI tests enroll the whole training set).
    train = examples_dir / "knn_examples" / "train"
    with SQLiteGallery(tmp_path / "g.db") as g:
        enroller = Enroller(g, analyzer)
        summary = enroller.enroll_person("kit_harington", [train / "kit_harington"])
        assert len(summary.added) == 2 and summary.skipped == ()
        emb = g.embeddings(analyzer.model_id)
        assert emb.matrix.shape == (2, analyzer.embedder.dim) == (2, 256)
        np.testing.assert_allclose(np.linalg.norm(emb.matrix, axis=1), 1.0, atol=1e-4)
        assert float(np.linalg.norm(emb.matrix[0] - emb.matrix[1])) < 0.9  # same person
        # A photo of two people is refused for one person; a photo without a face has none.
        other = enroller.enroll_person(
            "kit_harington", [examples_dir / "two_people.jpg", examples_dir.parent / "negatives" / "skimage_coffee.png"]
        )
        assert [s.reason for s in other.skipped] == [SkipReason.SEVERAL_FACES, SkipReason.NO_FACE]
        assert g.person("kit_harington").n_samples == 2
