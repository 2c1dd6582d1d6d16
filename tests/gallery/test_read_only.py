"""Read-only galleries (issue 11, item 5): every read works, every write says "read-only".

The checks run in a child process that really cannot write the gallery. As root,
file permissions do not apply (``CAP_DAC_OVERRIDE``), so the child drops that
capability (and ``CAP_DAC_READ_SEARCH``) from its bounding set before it starts
Python; the child first proves it cannot write the file, so a test can never pass by
silently writing.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facesense.errors import GalleryError
from facesense.gallery import NewSample, SQLiteGallery, open_gallery

MODEL = "fake-model/v1"
DIM = 8
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2

# Drops the capabilities that let root ignore file permissions, then runs Python on argv.
_LAUNCHER = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in ({CAP_DAC_OVERRIDE}, {CAP_DAC_READ_SEARCH}):
    if libc.prctl({PR_CAPBSET_DROP}, cap, 0, 0, 0) != 0:
        sys.exit("prctl: " + os.strerror(ctypes.get_errno()))
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""

# The reader: opens the gallery as `facesense people list` / `recognize` would, reads
# everything, tries every write, and prints a JSON report.
_READER = r"""
import json, sys, hashlib
from pathlib import Path
import numpy as np

path, export_to = Path(sys.argv[1]), Path(sys.argv[2])
def can(action):
    try:
        action()
        return True
    except PermissionError:
        return False
probe = path.with_name(".probe")
files = [f for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if f.exists()]
if all(can(lambda f=f: open(f, "ab").close()) for f in files) and can(lambda: probe.write_bytes(b"")):
    probe.unlink()
    sys.exit("precondition failed: this process can write " + str(files) + " and create files beside them")

from facesense.errors import GalleryError
from facesense.gallery import NewSample, open_gallery
from facesense.recognize import LiveMatcher, fit_matcher
if "--trust-nothing" in sys.argv:  # as on a read-only mount whose permission bits say "writable"
    import facesense.gallery.sqlite
    facesense.gallery.sqlite.read_only_reason = lambda path: None

MODEL = "fake-model/v1"
report = {}
with open_gallery(path, create=False) as g:
    report["read_only"] = g.read_only
    report["people"] = [(p.name, p.n_samples) for p in g.people()]
    alice = g.person("alice")
    report["by_id"] = g.person_by_id(alice.id).name
    report["samples"] = len(g.samples())
    emb = g.embeddings(MODEL)
    report["search"] = [list(r) for r in g.search(emb.matrix, 1, model_id=MODEL).labels]
    report["revision_stable"] = g.revision() == g.revision()
    report["export"] = g.export_file(export_to)
    matcher = fit_matcher(g, MODEL, threshold=0.5, normalize=False)
    report["matched"] = list(matcher.match(emb.matrix).names)
    live = LiveMatcher(g, MODEL, threshold=0.5, normalize=False)
    report["live"] = list(live.match(emb.matrix).names)
    e = np.ones(8, np.float32) / np.sqrt(8)
    new = NewSample(embedding=e, model_id=MODEL, source_sha256="d" * 64)
    writes = {
        "add": lambda: g.add_samples("zed", [new]),
        "add_existing": lambda: g.add_samples("alice", [new]),
        "rename": lambda: g.rename_person("alice", "alicia"),
        "remove_person": lambda: g.remove_person("alice"),
        "remove_sample": lambda: g.remove_sample(g.samples()[0].id),
        "replace": lambda: g.replace_samples({}),
        "import": lambda: g.import_file(export_to),
    }
    report["writes"] = {}
    for name, write in writes.items():
        try:
            write()
            report["writes"][name] = "written!"
        except GalleryError as exc:
            report["writes"][name] = str(exc)
    report["read_only_after"] = g.read_only
    if "--wait" in sys.argv:  # let the parent write, then look again
        before = g.revision()
        print(json.dumps(report), flush=True)
        sys.stdin.readline()
        report = {"revision_changed": g.revision() != before, "people": [(p.name, p.n_samples) for p in g.people()]}
print(json.dumps(report), flush=True)
"""


def _can_drop_capabilities() -> str | None:
    """Why a child cannot be made to obey file permissions, or ``None`` when it can."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_read = 23
    if libc.prctl(pr_capbset_read, CAP_DAC_OVERRIDE, 0, 0, 0) < 0:
        return "prctl(PR_CAPBSET_READ) is not available"
    capabilities = Path("/proc/self/status").read_text()
    eff = next((line.split()[1] for line in capabilities.splitlines() if line.startswith("CapEff:")), "0")
    cap_setpcap = 8
    if not int(eff, 16) >> cap_setpcap & 1:
        return "running as root without CAP_SETPCAP, so the child cannot drop CAP_DAC_OVERRIDE"
    return None


def _command(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return [sys.executable, "-c", _LAUNCHER, "-c", _READER, *args]
    return [sys.executable, "-c", _READER, *args]


def _sample(seed: int, sha: str | None = None) -> NewSample:
    e = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return NewSample(
        embedding=e / np.linalg.norm(e),
        model_id=MODEL,
        source_sha256=sha or hashlib.sha256(str(seed).encode()).hexdigest(),
    )


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    reason = _can_drop_capabilities()
    if reason is not None:
        pytest.skip(reason)
    d = tmp_path / "shared"
    d.mkdir()
    yield d
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)


def _make_gallery(path: Path) -> None:
    with SQLiteGallery(path) as g:
        g.add_samples("alice", [_sample(1), _sample(2)])
        g.add_samples("bob", [_sample(3)])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_report(report: dict[str, object], path: Path, *, found_at_first_write: bool = False) -> None:
    # A store knows it is read-only from the start, or (a read-only mount whose
    # permission bits say "writable") from the first write SQLite refuses.
    assert report["read_only"] is not found_at_first_write, report
    assert report["read_only_after"] is True
    assert report["people"] == [["alice", 2], ["bob", 1]]
    assert report["by_id"] == "alice" and report["samples"] == 3
    assert report["search"] == [["alice"], ["alice"], ["bob"]]
    assert report["revision_stable"] is True and report["export"] == 3
    assert report["matched"] == ["alice", "alice", "bob"] and report["live"] == ["alice", "alice", "bob"]
    writes = report["writes"]
    assert isinstance(writes, dict) and len(writes) == 7
    for name, message in writes.items():
        assert message.startswith(f"gallery {path} is read-only: "), (name, message)


LAYOUTS = {
    "read-only file, writable folder": (0o444, 0o755),
    "read-only file, read-only folder": (0o444, 0o555),
    "writable file, read-only folder": (0o644, 0o555),
}


@pytest.mark.parametrize(("file_mode", "folder_mode"), LAYOUTS.values(), ids=LAYOUTS.keys())
def test_reads_work_and_writes_say_read_only(folder: Path, tmp_path: Path, file_mode: int, folder_mode: int) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    assert sorted(f.name for f in folder.iterdir()) == ["gallery.db"]  # closed cleanly: no -wal/-shm
    digest = _digest(path)
    path.chmod(file_mode)
    folder.chmod(folder_mode)
    out = subprocess.run(_command(str(path), str(tmp_path / "export.npz")), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    _check_report(json.loads(out.stdout), path)
    folder.chmod(0o755)
    assert _digest(path) == digest
    # SQLite may leave an empty index behind in a writable folder, never a log with data.
    wal = folder / "gallery.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    if folder_mode == 0o555:
        assert sorted(f.name for f in folder.iterdir()) == ["gallery.db"]


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_when_sqlite_refuses_a_write_the_gallery_becomes_read_only(folder: Path, tmp_path: Path, journal: str) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    if journal == "delete":  # opening sets WAL mode, a write: refused at open, reopened read-only
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode = DELETE")
        con.close()
    path.chmod(0o444)
    out = subprocess.run(
        [*_command(str(path), str(tmp_path / "export.npz")), "--trust-nothing"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    _check_report(report, path, found_at_first_write=journal == "wal")
    assert "SQLite cannot write it (attempt to write a readonly database)" in report["writes"]["add"]


def test_write_ahead_log_files_of_another_user_make_it_read_only(folder: Path, tmp_path: Path) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    with SQLiteGallery(path) as owner:  # keeps -wal and -shm in place, as another user's server would
        owner.revision()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).chmod(0o444)
        out = subprocess.run(_command(str(path), str(tmp_path / "export.npz")), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    _check_report(report, path)
    assert "its write-ahead log file gallery.db-wal is not writable" in report["writes"]["add"]


def test_reads_the_log_of_a_gallery_another_process_has_open(folder: Path, tmp_path: Path) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    with SQLiteGallery(path) as writer:
        writer.add_samples("carol", [_sample(4)])  # committed into the -wal, not yet the file
        assert (folder / "gallery.db-wal").stat().st_size > 0
        for f in folder.iterdir():
            f.chmod(0o444)
        folder.chmod(0o555)
        out = subprocess.run(_command(str(path), str(tmp_path / "export.npz")), capture_output=True, text=True, timeout=120)
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["people"] == [["alice", 2], ["bob", 1], ["carol", 1]]
    assert report["read_only"] is True and report["export"] == 4
    assert all("is read-only" in m for m in report["writes"].values())


def test_an_immutable_reader_sees_a_later_write(folder: Path, tmp_path: Path) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    with subprocess.Popen(
        [*_command(str(path), str(tmp_path / "export.npz")), "--wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        first = json.loads(child.stdout.readline() or "null")
        assert first is not None, child.stderr.read() if child.stderr else ""
        _check_report(first, path)
        # The owner (this process, as root or as the file's owner) writes meanwhile.
        folder.chmod(0o755)
        path.chmod(0o644)
        con = sqlite3.connect(path)
        con.execute("DELETE FROM samples WHERE person_id = (SELECT id FROM people WHERE name = 'bob')")
        con.execute("DELETE FROM people WHERE name = 'bob'")
        con.commit()
        con.close()
        out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 0, err
    second = json.loads(out)
    assert second == {"revision_changed": True, "people": [["alice", 2]]}


def test_read_only_true_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    _make_gallery(path)
    digest = _digest(path)
    with open_gallery(path, read_only=True) as g:
        assert g.read_only  # type: ignore[attr-defined]
        assert [p.name for p in g.people()] == ["alice", "bob"]
        with pytest.raises(GalleryError, match=r"is read-only: it was opened read-only; cannot add samples"):
            g.add_samples("zed", [_sample(9)])
    assert _digest(path) == digest


def test_read_only_true_does_not_create(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="no gallery"):
        open_gallery(tmp_path / "missing.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_read_only_false_refuses_a_read_only_file(folder: Path) -> None:
    path = folder / "gallery.db"
    _make_gallery(path)
    path.chmod(0o444)
    script = (
        "import sys\nfrom facesense.errors import GalleryError\nfrom facesense.gallery import open_gallery\n"
        "try:\n    open_gallery(sys.argv[1], read_only=False)\nexcept GalleryError as exc:\n    print(exc)\n"
    )
    cmd = [sys.executable, "-c", _LAUNCHER, "-c", script, str(path)] if os.geteuid() == 0 else [sys.executable, "-c", script, str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"gallery {path} is read-only: the file is not writable by this user; cannot open it for writing")
