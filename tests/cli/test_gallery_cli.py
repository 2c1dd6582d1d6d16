"""``facesense enroll | people | recognize | reembed`` end to end, on the real models."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from facesense.cli import main

EXPECTED = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
    "obama1.jpg": ["obama"],
}


@pytest.fixture(scope="module")
def shared_analyzer() -> Iterator[None]:
    """Load the models once for the whole module instead of once per command."""
    import facesense.analyzer

    analyzer = facesense.analyzer.FaceAnalyzer()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(facesense.analyzer, "FaceAnalyzer", lambda *a, **k: analyzer)
        yield


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def one_line_error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, shared_analyzer: None) -> tuple[Path, Result]:
    db = tmp_path_factory.mktemp("gallery") / "knn.db"
    result = run("enroll", examples_dir / "knn_examples" / "train", "--db", db)
    return db, result


@pytest.fixture
def db(enrolled: tuple[Path, Result], tmp_path: Path) -> Path:
    """A private copy of the enrolled gallery (the connection is closed, so the WAL is merged)."""
    copy = tmp_path / "g.db"
    shutil.copy(enrolled[0], copy)
    return copy


def test_enroll_summary(enrolled: tuple[Path, Result]) -> None:
    _db, result = enrolled
    assert result.exit_code == 0, result.stderr
    table = result.stderr.splitlines()
    assert table[0].split()[:3] == ["person", "added", "unreadable"]
    rows = {line.split()[0]: int(line.split()[1]) for line in table[1:]}
    assert rows == {"alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "obama": 2, "rose_leslie": 2, "total": 9}


def test_recognize_knn_examples(db: Path, examples_dir: Path, tmp_path: Path) -> None:
    test_dir = examples_dir / "knn_examples" / "test"
    out = tmp_path / "annotated"
    result = run("recognize", test_dir, "--db", db, "--json", "--annotate", out)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(obj["path"]).name: obj for obj in lines}
    assert sorted(by_file) == sorted([*EXPECTED, "obama_and_biden.jpg"])
    for name, expected in EXPECTED.items():
        faces = by_file[name]["faces"]
        assert sorted(f["name"] for f in faces) == expected, (name, faces)
    group = [f["name"] for f in by_file["obama_and_biden.jpg"]["faces"]]
    assert "obama" in group and "biden" in group
    assert set(group) <= {"obama", "biden", "unknown"}
    assert group.count("obama") == 1 and group.count("biden") == 1
    face = by_file["obama1.jpg"]["faces"][0]
    assert set(face) == {"box", "score", "name", "distance", "confidence"}
    assert len(face["box"]) == 4 and face["box"][0] < face["box"][2] and face["box"][1] < face["box"][3]
    assert 0 < face["distance"] < 1 and 0.5 < face["confidence"] <= 1 and face["score"] > 0.9
    assert sorted(p.name for p in out.iterdir()) == sorted(by_file)


def test_recognize_text_output_and_matchers(db: Path, examples_dir: Path) -> None:
    image = examples_dir / "knn_examples" / "test" / "kit_with_rose.jpg"
    for matcher in ("svm", "mean"):  # knn, the default, is tested above
        result = run("recognize", image, "--db", db, "--matcher", matcher)
        assert result.exit_code == 0, result.stderr
        assert "kit_harington (" in result.stdout and "rose_leslie (" in result.stdout
    strict = run("recognize", image, "--db", db, "--threshold", "0.1", "--json")
    assert [f["name"] for f in json.loads(strict.stdout)["faces"]] == ["unknown", "unknown"]


def test_people_list_show_rename_remove(db: Path, tmp_path: Path) -> None:
    listed = run("people", "list", "--db", db, "--json")
    assert listed.exit_code == 0
    people = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(p["name"], p["samples"]) for p in people] == [
        ("alex_lacamoire", 1), ("biden", 2), ("kit_harington", 2), ("obama", 2), ("rose_leslie", 2),
    ]
    shown = run("people", "show", "obama", "--db", db, "--json", "--thumbnails", tmp_path / "thumbs")
    info = json.loads(shown.stdout)
    assert info["name"] == "obama" and len(info["samples"]) == 2
    assert len(list((tmp_path / "thumbs").glob("*.jpg"))) == 2
    assert run("people", "rename", "kit_harington", "Kit Harington", "--db", db).exit_code == 0
    assert run("people", "remove", "biden", "--db", db, input="n\n").exit_code != 0
    assert run("people", "remove", "biden", "--db", db, "--yes").exit_code == 0
    text = run("people", "list", "--db", db)
    assert text.exit_code == 0
    assert [line.split()[0] for line in text.stdout.splitlines()[1:]] == ["Kit", "alex_lacamoire", "obama", "rose_leslie"]


def test_export_import(db: Path, tmp_path: Path) -> None:
    export = tmp_path / "people.npz"
    assert run("people", "export", export, "--db", db).exit_code == 0
    copy = tmp_path / "copy.db"
    result = run("people", "import", export, "--db", copy)
    assert result.exit_code == 0, result.stderr
    assert "imported 9 samples (5 new people)" in result.stderr
    again = run("people", "import", export, "--db", copy)
    assert "imported 0 samples" in again.stderr and "9 already present" in again.stderr


def test_reembed_same_model_roundtrip(db: Path) -> None:
    for name in ("alex_lacamoire", "biden", "obama"):  # the big photos: keep the test quick
        assert run("people", "remove", name, "--yes", "--db", db).exit_code == 0
    result = run("reembed", "--db", db)
    assert result.exit_code == 0, result.stderr
    assert "reembedded 4 samples" in result.stderr


def test_enroll_one_person_and_duplicates(db: Path, examples_dir: Path) -> None:
    photo = examples_dir / "obama.jpg"
    first = run("enroll", "--name", "obama", photo, "--db", db)
    assert first.exit_code == 0, first.stderr
    again = run("enroll", "--name", "obama", photo, "--db", db, "--json")
    assert again.exit_code == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["added"] == [] and [s["reason"] for s in out["skipped"]] == ["duplicate"]


# --- bad input: one-line error, non-zero exit, gallery unchanged ----------------------


@pytest.mark.parametrize(
    "args",
    [
        ("people", "show", "nobody"),
        ("people", "rename", "nobody", "x"),
        ("people", "remove", "nobody", "--yes"),
        ("people", "rename", "obama", "biden"),
        ("enroll", "--name", "obama", "{missing}"),
        ("enroll", "{missing}"),
        ("enroll", "{empty}"),
        ("enroll", "--name", "obama", "{empty}"),
        ("enroll", "--name", "obama", "{notimage}"),
        ("enroll", "--strict", "--name", "obama", "{obama}", "{notimage}"),
        ("enroll", "--strict", "--name", "obama", "{obama}", "{missing}"),
        ("enroll", "--name", "unknown", "{obama}"),
        ("enroll", "--name", "x", "--camera", "97"),
        ("enroll", "--camera", "0"),
        ("recognize", "{notimage}"),
        ("people", "import", "{notimage}"),
    ],
)
def test_bad_input_leaves_gallery_unchanged(db: Path, tmp_path: Path, examples_dir: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimage.jpg").write_text("this is not a picture")
    subs = {
        "{missing}": str(tmp_path / "missing"),
        "{empty}": str(tmp_path / "empty"),
        "{notimage}": str(tmp_path / "notimage.jpg"),
        "{obama}": str(examples_dir / "obama.jpg"),
    }
    before = digest(db)
    result = run(*[subs.get(a, a) for a in args], "--db", db)
    assert result.exit_code not in (0, None), result.stdout
    one_line_error(result)
    assert digest(db) == before


@pytest.mark.parametrize("kind", ["jpeg", "foreign_sqlite", "newer"])
@pytest.mark.parametrize("command", [("people", "list"), ("recognize", "{image}"), ("enroll", "--name", "x", "{image}")])
def test_not_a_usable_gallery(db: Path, tmp_path: Path, examples_dir: Path, kind: str, command: tuple[str, ...]) -> None:
    target = tmp_path / "bad.db"
    if kind == "jpeg":
        shutil.copy(examples_dir / "obama.jpg", target)
    elif kind == "foreign_sqlite":
        con = sqlite3.connect(target)
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
    else:
        shutil.copy(db, target)
        con = sqlite3.connect(target)
        con.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
        con.commit()
        con.close()
    before = digest(target)
    args = [str(examples_dir / "obama.jpg") if a == "{image}" else a for a in command]
    result = run(*args, "--db", target)
    assert result.exit_code == 6, result.stderr
    message = one_line_error(result)
    assert ("newer facesense" if kind == "newer" else "not a facesense gallery") in message
    assert digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db", "g.db"]


def test_read_commands_do_not_create_a_gallery(tmp_path: Path, examples_dir: Path) -> None:
    missing = tmp_path / "none.db"
    for args in (("people", "list"), ("recognize", examples_dir / "obama.jpg"), ("reembed",)):
        result = run(*args, "--db", missing)
        assert result.exit_code == 6
        assert "no gallery" in one_line_error(result)
    assert not missing.exists()


def test_failed_first_enrollment_leaves_no_file(tmp_path: Path, examples_dir: Path, shared_analyzer: None) -> None:
    new = tmp_path / "new.db"
    result = run("enroll", "--name", "x", examples_dir.parent / "negatives" / "skimage_brick.png", "--db", new)
    assert result.exit_code == 7
    assert "skimage_brick.png: no face found; nothing was enrolled" in one_line_error(result)
    assert not new.exists() and list(tmp_path.iterdir()) == []


def test_db_from_environment(tmp_path: Path, examples_dir: Path, shared_analyzer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESENSE_DB", str(tmp_path / "env.db"))
    result = run("enroll", "--name", "obama", examples_dir / "obama.jpg")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "env.db").is_file()
    assert json.loads(run("people", "list", "--json").stdout)["name"] == "obama"


# --- the exit-code rule: a bad file is reported, the rest processed -------------------


def test_recognize_good_and_bad_files(db: Path, examples_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    good = examples_dir / "knn_examples" / "test" / "obama1.jpg"
    result = run("recognize", good, bad, tmp_path / "missing.jpg", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(good), str(bad), str(tmp_path / "missing.jpg")]
    assert [f["name"] for f in records[0]["faces"]] == ["obama"]
    assert set(records[1]) == {"path", "error"} and "not a readable image" in records[1]["error"]
    assert "no such file" in records[2]["error"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "bad.jpg: not a readable image" in errors[0]
    assert "2 of 3 file(s) could not be read" in result.stderr
    text = run("recognize", bad, good, "--db", db)
    assert text.exit_code == 0 and text.stdout.startswith(f"{good}: obama (")
    nothing = run("recognize", bad, tmp_path / "missing.jpg", "--db", db)
    assert nothing.exit_code == 4 and nothing.stdout == ""
    assert [line.split(": ")[0] for line in nothing.stderr.splitlines()] == ["error", "error"]


def test_enroll_good_and_bad_files(db: Path, examples_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    before = json.loads(run("people", "show", "obama", "--db", db, "--json").stdout)
    photo = examples_dir / "knn_examples" / "test" / "obama1.jpg"  # not among the enrolled ones
    result = run("enroll", "--name", "obama", photo, bad, tmp_path / "missing.jpg", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert [Path(a["path"]).name for a in out["added"]] == ["obama1.jpg"]
    assert [(Path(s["path"]).name, s["reason"]) for s in out["skipped"]] == [("bad.jpg", "unreadable"), ("missing.jpg", "unreadable")]
    assert f"skipped {bad}: unreadable (not a readable image" in result.stderr
    after = json.loads(run("people", "show", "obama", "--db", db, "--json").stdout)
    assert len(after["samples"]) == len(before["samples"]) + 1
    # The same run again: the photo is already in, so it succeeds and adds nothing.
    again = run("enroll", "--name", "obama", photo, bad, "--db", db, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["added"] == []
    assert [s["reason"] for s in json.loads(again.stdout)["skipped"]] == ["duplicate", "unreadable"]


def test_enroll_nothing_usable_in_several_files(db: Path, examples_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("not a picture")
    (tmp_path / "b.jpg").write_bytes(b"")
    unreadable = run("enroll", "--name", "obama", tmp_path / "a.jpg", tmp_path / "b.jpg", "--db", db)
    assert unreadable.exit_code == 4
    assert unreadable.stderr.splitlines()[-1] == "error: none of the 2 files is a readable image; nothing was enrolled"
    brick = examples_dir.parent / "negatives" / "skimage_brick.png"
    mixed = run("enroll", "--name", "obama", tmp_path / "a.jpg", brick, "--db", db)
    assert mixed.exit_code == 7
    assert "(1 no_face, 1 unreadable)" in mixed.stderr.splitlines()[-1]


def test_enroll_skip_unreadable_still_accepted(db: Path, examples_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("not a picture")
    result = run("enroll", "--skip-unreadable", "--name", "obama", examples_dir / "obama.jpg", tmp_path / "a.jpg", "--db", db)
    assert result.exit_code == 0, result.stderr
    assert "--skip-unreadable" not in run("enroll", "--help").stdout  # hidden: skipping is the default


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (("detect",), "0 when at least one image was processed"),
        (("embed",), "0 when at least one image was processed"),
        (("recognize",), "0 when at least one image was processed"),
        (("enroll",), "0 when at least one photo is in the"),
        (("watch",), "Exit status: 0 when the source ended"),
        (("people",), "exit 0 when done"),
        (("people", "import"), "All or nothing"),
        (("reembed",), "gallery is left unchanged"),
        (("eval",), "Exit status: 0 when the report was computed"),
    ],
)
def test_every_command_states_its_exit_rule(command: tuple[str, ...], words: str) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert words in " ".join(result.stdout.split())


# --- gallery locations ------------------------------------------------------------------


def test_gallery_as_sqlite_url(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    listed = run("people", "list", "--json", "--db", f"sqlite:///{db.name}")
    assert listed.exit_code == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 5


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("postgresql://me:secret@127.0.0.1:1/faces", 6, "cannot connect to postgresql://me@127.0.0.1:1/faces"),
        ("sqlit:///g.db", 2, "did you mean 'sqlite'?"),
    ],
)
@pytest.mark.parametrize("command", [("people", "list"), ("enroll", "--name", "x", "{image}"), ("recognize", "{image}")])
def test_unusable_gallery_url(tmp_path: Path, examples_dir: Path, monkeypatch: pytest.MonkeyPatch, url: str, code: int, words: str, command: tuple[str, ...]) -> None:
    """A misspelt scheme and an unreachable database: one line, no file named like the URL, no password shown."""
    monkeypatch.chdir(tmp_path)
    args = [str(examples_dir / "obama.jpg") if a == "{image}" else a for a in command]
    result = run(*args, "--db", url)
    assert result.exit_code == code
    assert words in one_line_error(result)
    assert "secret" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing named like the URL was created


def test_did_you_mean_for_choices(db: Path, examples_dir: Path) -> None:
    result = run("recognize", examples_dir / "obama.jpg", "--db", db, "--matcher", "snm")
    assert result.exit_code == 2
    assert "unknown matcher 'snm' (did you mean 'svm'?); choose one of knn, svm, mean" in result.stderr
    assert "Traceback" not in result.output


# --- a gallery the user cannot write (issue 11, item 5) ---------------------------------

# Root ignores file permissions; drop the capabilities that allow it, then run the CLI.
_NO_DAC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit("prctl: " + os.strerror(ctypes.get_errno()))
os.execv(sys.executable, [sys.executable, "-m", "facesense.cli", *sys.argv[1:]])
"""


def test_read_only_gallery(db: Path, tmp_path: Path, examples_dir: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "locked"
    folder.mkdir()
    locked = folder / "g.db"
    shutil.copy(db, locked)
    locked.chmod(0o444)
    folder.chmod(0o555)
    before = digest(locked)

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _NO_DAC, *map(str, args), "--db", str(locked)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    try:
        probe = subprocess.run([sys.executable, "-c", _NO_DAC.replace('"-m", "facesense.cli", ', ""), "-c", f"open({str(locked)!r}, 'ab')"], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("cannot drop the permission-overriding capabilities here")
        listed = cli("people", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["name"] for line in listed.stdout.splitlines()][:2] == ["alex_lacamoire", "biden"]
        recognized = cli("recognize", examples_dir / "knn_examples" / "test" / "obama1.jpg", "--json")
        assert recognized.returncode == 0, recognized.stderr
        assert [f["name"] for f in json.loads(recognized.stdout)["faces"]] == ["obama"]
        for write in (("people", "rename", "obama", "barack"), ("enroll", "--name", "x", examples_dir / "obama.jpg")):
            refused = cli(*write)
            assert refused.returncode == 6, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and "read-only" in lines[0], refused.stderr
        assert digest(locked) == before
        assert sorted(p.name for p in folder.iterdir()) == ["g.db"]
    finally:
        folder.chmod(0o755)


def test_enroll_from_a_video_as_the_camera(tmp_path: Path, examples_dir: Path, shared_analyzer: None) -> None:
    db = tmp_path / "cam.db"
    clip = examples_dir / "short_hamilton_clip.mp4"
    result = run("enroll", "--name", "someone", "--camera", clip, "--samples", "1", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    (added,) = json.loads(result.stdout)["added"]
    assert added["path"].startswith(f"{clip}#frame")
    shown = json.loads(run("people", "show", "someone", "--db", db, "--json").stdout)
    assert [s["source"] for s in shown["samples"]] == [str(clip)]
