"""``reembed --from-thumbnails``: samples whose photo is gone are re-embedded from their thumbnail.

The upgrade case: a gallery enrolled with the old default (FaceNet + dlib) whose photos of one
person were deleted, re-embedded with the new default (dlib + SFace).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesense.errors import EnrollmentError
from facesense.gallery.base import NewSample
from facesense.gallery.sqlite import SQLiteGallery


@pytest.fixture(scope="module")
def analyzers():
    from facesense.analyzer import FaceAnalyzer
    from facesense.embed import make_embedder

    return FaceAnalyzer(embedder=make_embedder("facenet+dlib")), FaceAnalyzer()


@pytest.fixture
def old_gallery(tmp_path: Path, examples_dir: Path, analyzers) -> tuple[Path, Path]:
    """knn_examples/train copied and enrolled with facenet+dlib; obama's photos then deleted."""
    from facesense.enroll import Enroller

    train = tmp_path / "train"
    shutil.copytree(examples_dir / "knn_examples" / "train", train)
    db = tmp_path / "g.db"
    with SQLiteGallery(db) as g:
        Enroller(g, analyzers[0]).enroll_folder(train)
    shutil.rmtree(train / "obama")
    return db, train


def test_samples_without_their_photo_come_from_the_thumbnail(old_gallery, analyzers, examples_dir: Path) -> None:
    from facesense.enroll import reembed
    from facesense.imageio import load_image
    from facesense.recognize import Recognizer

    db, _ = old_gallery
    old, new = analyzers
    with SQLiteGallery(db) as g:
        obama = [s.id for s in g.samples() if s.person == "obama"]
        total = len(g.samples())
        assert obama and g.model_id == old.model_id
        with pytest.raises(EnrollmentError, match="--from-thumbnails"):
            reembed(g, new)
        assert g.model_id == old.model_id  # unchanged
        result = reembed(g, new, from_thumbnails=True)
        assert (result.reembedded, result.from_thumbnails, result.dropped) == (total, len(obama), ())
        assert g.model_id == new.model_id and {s.model_id for s in g.samples()} == {new.model_id}
        named = Recognizer(g, analyzer=new).recognize(load_image(examples_dir / "obama.jpg"))
    assert list(named.names) == ["obama"]  # from samples embedded from thumbnails only


def test_a_thumbnail_without_a_face_is_a_problem_not_a_crash(tmp_path: Path, examples_dir: Path, analyzers) -> None:
    from facesense.enroll import Enroller, reembed

    old, new = analyzers
    with SQLiteGallery(tmp_path / "g.db") as g:
        Enroller(g, old).enroll_person("biden", [examples_dir / "biden.jpg"])
        embedding = g.embeddings(old.model_id).matrix[0]
        for i, thumbnail in enumerate((b"", b"not a jpeg", _grey_jpeg())):
            g.add_samples("biden", [NewSample(embedding=embedding, model_id=old.model_id, source_sha256=f"{i:064x}",
                                              source_path="camera:0", xyxy=(0.0, 0.0, 10.0, 10.0), thumbnail_jpeg=thumbnail)])
        with pytest.raises(EnrollmentError, match=r"no source file .*; no thumbnail.*and 2 more"):
            reembed(g, new, from_thumbnails=True)
        result = reembed(g, new, from_thumbnails=True, drop_missing=True)
        reasons = sorted(why for _, _, why in result.dropped)
    assert result.reembedded == 1 and result.from_thumbnails == 0
    assert [r.split("; ")[1].split(" (")[0] for r in reasons] == ["no face in its thumbnail", "no thumbnail", "thumbnail unreadable"]


def _grey_jpeg() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((96, 96, 3), 128, np.uint8))
    assert ok
    return bytes(buf.tobytes())


def test_the_command_says_how_many_came_from_thumbnails(old_gallery) -> None:
    from facesense.cli import main

    db, _ = old_gallery
    refused = CliRunner().invoke(main, ["reembed", "--db", str(db)])
    assert refused.exit_code == 7 and "--from-thumbnails" in refused.output and "Traceback" not in refused.output
    done = CliRunner().invoke(main, ["reembed", "--db", str(db), "--from-thumbnails"])
    assert done.exit_code == 0, done.output
    assert "(2 from their thumbnails)" in done.output


def test_negatives_are_re_embedded_from_their_thumbnail_and_still_veto(tmp_path: Path, examples_dir: Path, analyzers) -> None:
    """ "Not obama" on Biden's face, made with the old model, still keeps Biden from being named
    Obama after the move to the new model (rejection off, so only the veto can say no)."""
    from facesense.enroll import Enroller, reembed, thumbnail_jpeg
    from facesense.imageio import load_image
    from facesense.recognize import Recognizer

    old, new = analyzers
    biden = load_image(examples_dir / "biden.jpg")
    with SQLiteGallery(tmp_path / "g.db") as g:
        Enroller(g, old).enroll_person("obama", [examples_dir / "obama.jpg"])
        assert list(Recognizer(g, analyzer=old, threshold=None).recognize(biden).names) == ["obama"]
        face = old.detect(biden)
        wrong = old.embed(biden, face).embeddings
        g.add_negative("obama", NewSample(embedding=wrong[0], model_id=old.model_id, source_sha256="b" * 64,
                                          xyxy=tuple(float(v) for v in face.xyxy[0]), thumbnail_jpeg=thumbnail_jpeg(biden, face)),
                       source="event 1")
        assert list(Recognizer(g, analyzer=old, threshold=None).recognize(biden).names) == [None]
        result = reembed(g, new)
        assert (result.negatives, result.negatives_dropped) == (1, 0)
        (negative,) = g.negative_records()
        assert (negative.person, negative.model_id, negative.dim) == ("obama", new.model_id, 256)
        assert list(Recognizer(g, analyzer=new, threshold=None).recognize(biden).names) == [None]
        # the veto is what stops it: without the negative the new model names Biden Obama too
        g.remove_negative(negative.id)
        assert list(Recognizer(g, analyzer=new, threshold=None).recognize(biden).names) == ["obama"]
