"""fit_matcher, LiveMatcher and Recognizer: from a gallery to names.

Synthetic unit embeddings for the plumbing; the real models on the knn_examples photos.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesense.errors import ConfigError, GalleryError, ModelMismatchError
from facesense.gallery import NewSample, SQLiteGallery
from facesense.recognize import LiveMatcher, Recognizer, fit_matcher

MODEL = "fake-model/v1"
DIM = 16
OPTS: dict[str, Any] = {"threshold": 0.6, "normalize": False}  # a fake model has no calibration

EXPECTED = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
    "obama1.jpg": ["obama"],
}


def person_vector(person: int) -> np.ndarray:
    """A fixed direction per person (orthogonal for persons < DIM)."""
    v = np.zeros(DIM, np.float32)
    v[person] = 1.0
    return v


def near(person: int, seed: int, spread: float = 0.1) -> np.ndarray:
    """A unit vector close to ``person``'s direction."""
    v = person_vector(person) + spread * np.random.default_rng(seed).normal(size=DIM).astype(np.float32) / np.sqrt(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def sample(person: int, seed: int, *, model: str = MODEL) -> NewSample:
    return NewSample(
        embedding=near(person, seed),
        model_id=model,
        source_sha256=hashlib.sha256(f"{person}-{seed}".encode()).hexdigest(),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gallery.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteGallery]:
    with SQLiteGallery(db) as g:
        yield g


# --- fit_matcher ---------------------------------------------------------------------------


def test_fit_matcher_on_an_empty_gallery_is_none(store: SQLiteGallery) -> None:
    assert fit_matcher(store, MODEL, **OPTS) is None


def test_fit_matcher_names_the_enrolled(store: SQLiteGallery) -> None:
    store.add_samples("ann", [sample(0, 1), sample(0, 2)])
    store.add_samples("ben", [sample(1, 3)])
    matcher = fit_matcher(store, MODEL, **OPTS)
    assert matcher is not None and matcher.threshold == 0.6
    result = matcher.match(np.stack([near(0, 10), near(1, 11), near(5, 12)]))
    assert result.names == ("ann", "ben", None)
    for kind in ("knn", "mean", "svm"):
        other = fit_matcher(store, MODEL, kind=kind, **OPTS)
        assert other is not None
        assert other.match(np.stack([near(0, 10), near(1, 11)])).names == ("ann", "ben"), kind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kk": 3}, "unknown matcher option 'kk' .*did you mean 'k'"),
        ({"kind": "knnn"}, "unknown matcher"),
        ({"k": 0}, "k must be >= 1"),
        ({"threshold": "loose"}, "threshold must be"),
    ],
)
def test_fit_matcher_checks_options_even_for_an_empty_gallery(store: SQLiteGallery, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit_matcher(store, MODEL, **{**OPTS, **options})
    with pytest.raises(ConfigError, match=message):
        LiveMatcher(store, MODEL, **{**OPTS, **options})


def test_fit_matcher_refuses_another_models_gallery(store: SQLiteGallery) -> None:
    store.add_samples("ann", [sample(0, 1, model="other/v2")])
    with pytest.raises(ModelMismatchError):
        fit_matcher(store, MODEL, **OPTS)


def test_recognizer_refuses_an_empty_gallery_and_mixed_arguments(store: SQLiteGallery) -> None:
    from facesense.match import make_matcher

    class NoModels:
        model_id = MODEL

    with pytest.raises(GalleryError, match="nobody in it"):
        Recognizer(store, analyzer=NoModels(), **OPTS)  # type: ignore[arg-type]
    store.add_samples("ann", [sample(0, 1)])
    with pytest.raises(ConfigError, match="either a matcher or the options"):
        Recognizer(store, analyzer=NoModels(), matcher=make_matcher("knn", **OPTS), **OPTS)  # type: ignore[arg-type]
    recognizer = Recognizer(store, analyzer=NoModels(), **OPTS)  # type: ignore[arg-type]
    assert recognizer.people == ("ann",) and recognizer.matcher.threshold == 0.6


# --- LiveMatcher ---------------------------------------------------------------------------


def _named_within(live: LiveMatcher, probe: np.ndarray, name: str, seconds: float) -> float | None:
    """Seconds until ``live`` names ``probe`` as ``name`` (polling like a 50 fps camera), or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if live.match(probe[None, :]).names == (name,):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_live_matcher_says_unknown_while_the_gallery_is_empty(store: SQLiteGallery) -> None:
    live = LiveMatcher(store, MODEL, **OPTS)
    result = live.match(np.stack([near(0, 1), near(1, 2)]))
    assert result.names == (None, None) and result.candidates == (None, None)
    assert np.all(np.isinf(result.distances)) and np.all(result.confidences == 0)
    assert live.match(near(0, 1)).names == (None,)  # one (D,) probe
    assert len(live.match(np.zeros((0, DIM), np.float32))) == 0
    assert live.matcher is None and live.people == () and live.problem is None


def test_live_matcher_sees_a_person_enrolled_by_another_connection(store: SQLiteGallery, db: Path) -> None:
    store.add_samples("ann", [sample(0, 1)])
    live = LiveMatcher(store, MODEL, **OPTS)
    assert live.match(near(1, 5)[None, :]).names == (None,)
    with SQLiteGallery(db) as other:
        other.add_samples("ben", [sample(1, 2)])
    took = _named_within(live, near(1, 5), "ben", 1.0)
    assert took is not None, "not named within 1 s"
    assert live.people == ("ann", "ben")


def test_a_read_only_live_matcher_sees_writes_too(db: Path) -> None:
    with SQLiteGallery(db) as writer:
        writer.add_samples("ann", [sample(0, 1)])
    with SQLiteGallery(db, read_only=True) as reader, SQLiteGallery(db) as writer:  # as `watch` opens it
        live = LiveMatcher(reader, MODEL, **OPTS)
        assert live.match(near(1, 5)[None, :]).names == (None,)
        writer.add_samples("ben", [sample(1, 2)])
        assert _named_within(live, near(1, 5), "ben", 1.0) is not None, "not named within 1 s"


def test_live_matcher_sees_a_person_enrolled_by_another_process(store: SQLiteGallery, db: Path) -> None:
    live = LiveMatcher(store, MODEL, **OPTS)
    assert live.match(near(2, 5)[None, :]).names == (None,)
    script = (
        "import sys, numpy as np\nfrom facesense.gallery import NewSample, open_gallery\n"
        "e = np.zeros(16, np.float32); e[2] = 1\n"
        "with open_gallery(sys.argv[1], create=False) as g:\n"
        "    g.add_samples('cat', [NewSample(embedding=e, model_id=sys.argv[2], source_sha256='e' * 64)])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db), MODEL], check=True, timeout=60)
    assert _named_within(live, near(2, 5), "cat", 1.0) is not None, "not named within 1 s"


def test_live_matcher_refits_only_when_the_revision_changes(store: SQLiteGallery) -> None:
    store.add_samples("ann", [sample(0, 1)])
    live = LiveMatcher(store, MODEL, check_interval_s=0, **OPTS)
    first = live.refresh()
    for _ in range(5):
        live.match(near(0, 3)[None, :])
    assert live.matcher is first
    store.rename_person("ann", "anna")
    assert live.match(near(0, 3)[None, :]).names == ("anna",)
    assert live.matcher is not first


def test_live_matcher_checks_at_most_every_interval(store: SQLiteGallery) -> None:
    live = LiveMatcher(store, MODEL, check_interval_s=30, **OPTS)
    assert live.match(near(0, 3)[None, :]).names == (None,)
    store.add_samples("ann", [sample(0, 1)])
    assert live.match(near(0, 3)[None, :]).names == (None,)  # not checked yet
    live.invalidate()
    assert live.match(near(0, 3)[None, :]).names == ("ann",)


def test_live_matcher_reports_an_unusable_gallery(store: SQLiteGallery, caplog: pytest.LogCaptureFixture) -> None:
    store.add_samples("ann", [sample(0, 1, model="other/v2")])
    live = LiveMatcher(store, MODEL, check_interval_s=0, **OPTS)
    for _ in range(3):
        assert live.match(near(0, 3)[None, :]).names == (None,)
    assert isinstance(live.problem, ModelMismatchError)
    assert sum("cannot name faces" in r.message for r in caplog.records) == 1  # logged once
    with pytest.raises(ModelMismatchError):
        live.refresh()
    store.remove_person("ann")  # reembed would do this: the gallery becomes usable
    store.add_samples("ann", [sample(0, 1)])
    assert live.match(near(0, 3)[None, :]).names == ("ann",) and live.problem is None


def test_live_matcher_is_thread_safe(store: SQLiteGallery) -> None:
    store.add_samples("p0", [sample(0, 0)])
    live = LiveMatcher(store, MODEL, check_interval_s=0, **OPTS)
    errors: list[BaseException] = []
    stop = threading.Event()

    def camera(person: int) -> None:
        try:
            while not stop.is_set():
                names = live.match(np.stack([near(0, 7), near(person, 8)])).names
                assert names[0] == "p0"
                assert names[1] in (None, f"p{person}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(p,)) for p in (1, 2, 3)]
    for t in threads:
        t.start()
    for p in (1, 2, 3):
        store.add_samples(f"p{p}", [sample(p, p)])
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert live.match(np.stack([near(p, 9) for p in (1, 2, 3)])).names == ("p1", "p2", "p3")


# --- the real models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer(shared_cache: Path) -> Any:
    from facesense.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="module")
def knn_gallery(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    from facesense.enroll import Enroller

    db = tmp_path_factory.mktemp("knn") / "knn.db"
    with SQLiteGallery(db) as gallery:
        summary = Enroller(gallery, analyzer).enroll_folder(examples_dir / "knn_examples" / "train")
    assert len(summary.added) == 9
    return db


def test_fit_matcher_names_the_knn_examples(knn_gallery: Path, examples_dir: Path, analyzer: Any) -> None:
    test_dir = examples_dir / "knn_examples" / "test"
    from facesense.imageio import load_image

    with SQLiteGallery(knn_gallery, create=False) as gallery:
        matcher = fit_matcher(gallery, analyzer.model_id)
        recognizer = Recognizer(gallery, analyzer=analyzer)
        live = LiveMatcher(gallery, analyzer.model_id)
        assert matcher is not None
        for name, expected in EXPECTED.items():
            image = load_image(test_dir / name)
            faces = analyzer.embed(image, analyzer.detect(image))
            assert sorted(n or "unknown" for n in matcher.match(faces.embeddings).names) == expected, name
            assert sorted(n or "unknown" for n in live.match(faces.embeddings).names) == expected, name
            assert sorted(n or "unknown" for n in recognizer.recognize(image).names) == expected, name
        image = load_image(test_dir / "obama_and_biden.jpg")
        named = recognizer.recognize(image)
        group = [n for n in named.names if n is not None]
        assert sorted(group) == ["biden", "obama"]
        # The identity decision travels on the faces: a state per face, and the
        # confidence in that decision (for the stranger: that it is nobody enrolled).
        from facesense.types import IdentityState

        assert named.states == tuple(IdentityState.UNKNOWN if n is None else IdentityState.KNOWN for n in named.names)
        assert named.confidences is not None and (named.confidences > 0.5).all()
