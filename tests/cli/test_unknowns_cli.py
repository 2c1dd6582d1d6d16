"""``facesense unknowns`` end to end on the Hamilton clip: ``watch`` records the people the
gallery does not know, ``unknowns name`` enrolls one of them, and the next ``watch`` names them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from facesense.cli import main

FRAMES = "150"  # Lin on stage and two other faces; ~12 s a run on two busy cores


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def recorded(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gallery of Obama only (nobody in the clip), and one watch of the clip's first frames."""
    tmp = tmp_path_factory.mktemp("unknowns")
    db = tmp / "gallery.db"
    runner = CliRunner()
    enrolled = runner.invoke(main, ["enroll", "--name", "obama", str(examples_dir / "knn_examples" / "train" / "obama"),
                                    "--db", str(db)])  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output
    clip = examples_dir / "short_hamilton_clip.mp4"
    watched = runner.invoke(main, ["watch", str(clip), "--db", str(db), "--no-display", "--max-frames", FRAMES])
    assert watched.exit_code == 0, watched.output
    return tmp, clip


def _copy(recorded: tuple[Path, Path], dest: Path) -> Path:
    tmp, _ = recorded
    for name in ("gallery.db", "gallery.unknowns.db"):
        shutil.copy(tmp / name, dest / name)
    return dest / "gallery.db"


def test_watch_records_unknowns_and_naming_one_makes_the_next_watch_name_them(
    recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    _, clip = recorded
    db = _copy(recorded, tmp_path)
    runner = CliRunner()
    listed = runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)])
    assert listed.exit_code == 0, listed.output
    clusters = _lines(listed.output)
    assert clusters, "watch stored no unknown cluster"
    assert {"cluster", "records", "faces", "first_seen", "last_seen", "sources"} <= set(clusters[0])
    assert all(c["sources"] == [str(clip)] for c in clusters)
    assert any(c["recurring"] for c in clusters)  # Lin's two tracks of the first shots are one visitor
    biggest = max(clusters, key=lambda c: (c["faces"], -c["cluster"]))

    shown = runner.invoke(main, ["unknowns", "show", str(biggest["cluster"]), "--json", "--crops", str(tmp_path / "crops"),
                                 "--db", str(db)])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    detail = _lines(shown.output)[0]
    assert detail["records"] == biggest["records"] and len(detail["record_list"]) == biggest["records"]
    crops = sorted((tmp_path / "crops").glob("*.jpg"))
    assert crops and all(p.read_bytes().startswith(b"\xff\xd8") for p in crops)

    named = runner.invoke(main, ["unknowns", "name", str(biggest["cluster"]), "somebody", "--db", str(db)])
    assert named.exit_code == 0, named.output
    people = _lines(runner.invoke(main, ["people", "list", "--json", "--db", str(db)]).output)
    assert {p["name"] for p in people} == {"obama", "somebody"}
    after = _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)
    assert biggest["cluster"] not in {c["cluster"] for c in after}

    events_path = tmp_path / "events.jsonl"
    again = runner.invoke(main, ["watch", str(clip), "--db", str(db), "--no-display", "--max-frames", FRAMES,
                                 "--events", str(events_path), "--no-unknowns"])  # fmt: skip
    assert again.exit_code == 0, again.output
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert any(e["type"] == "recognized" and e["name"] == "somebody" for e in events)
    # --no-unknowns: the second run recorded nothing new.
    final = _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)
    assert [c["cluster"] for c in final] == [c["cluster"] for c in after]


def test_corrections_from_the_command_line(recorded: tuple[Path, Path], tmp_path: Path) -> None:
    db = _copy(recorded, tmp_path)
    runner = CliRunner()
    clusters = _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)
    assert len(clusters) >= 2
    a, b = sorted(c["cluster"] for c in clusters)[:2]
    merged = runner.invoke(main, ["unknowns", "merge", str(a), str(b), "--db", str(db)])
    assert merged.exit_code == 0, merged.output
    after = {c["cluster"]: c for c in _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)}
    assert b not in after and after[a]["records"] == sum(c["records"] for c in clusters if c["cluster"] in (a, b))

    assert runner.invoke(main, ["unknowns", "ignore", str(a), "--db", str(db)]).exit_code == 0
    listed = _lines(runner.invoke(main, ["unknowns", "list", "--json", "--db", str(db)]).output)
    assert a not in {c["cluster"] for c in listed}
    every = {c["cluster"]: c for c in _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)}
    assert every[a]["ignored"]
    assert runner.invoke(main, ["unknowns", "ignore", str(a), "--undo", "--db", str(db)]).exit_code == 0
    shown = _lines(runner.invoke(main, ["unknowns", "show", str(a), "--json", "--db", str(db)]).output)[0]
    assert not shown["ignored"]

    record = shown["record_list"][0]["record"]
    removed = runner.invoke(main, ["unknowns", "remove", str(record), "--db", str(db)])
    assert removed.exit_code == 0, removed.output
    shown = _lines(runner.invoke(main, ["unknowns", "show", str(a), "--json", "--db", str(db)]).output)[0]
    assert record not in {r["record"] for r in shown["record_list"]}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "999"], 8, "no unknown cluster 999"),
        (["name", "999", "ann"], 8, "no unknown cluster 999"),
        (["name", "1", "  "], 2, "must not be empty"),
        (["merge", "1", "1"], 2, "with itself"),
        (["merge", "1", "999"], 8, "no unknown cluster 999"),
        (["ignore", "999"], 8, "no unknown cluster 999"),
        (["remove", "999"], 8, "no unknown record 999"),
        (["show", "abc"], 2, "is not a valid integer"),
    ],
)
def test_bad_ids_and_names_give_one_line_and_an_exit_code(
    recorded: tuple[Path, Path], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    db = _copy(recorded, tmp_path)
    result = CliRunner().invoke(main, ["unknowns", *args, "--db", str(db)])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_gallery_without_unknowns_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["unknowns", "list", "--db", str(tmp_path / "gallery.db")])
    assert result.exit_code == 6
    assert result.output.startswith("error: no unknowns recorded for") and len(result.output.splitlines()) == 1
    assert not (tmp_path / "gallery.unknowns.db").exists()


def test_prune_drops_records_past_the_limits(recorded: tuple[Path, Path], tmp_path: Path) -> None:
    db = _copy(recorded, tmp_path)
    runner = CliRunner()
    before = sum(c["records"] for c in _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output))
    assert runner.invoke(main, ["unknowns", "prune", "--days", "30", "--db", str(db)]).exit_code == 0
    kept = _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)
    assert sum(c["records"] for c in kept) == before  # all recorded just now
    pruned = runner.invoke(main, ["unknowns", "prune", "--keep", "1", "--db", str(db)])
    assert pruned.exit_code == 0 and f"pruned {before - 1} record(s)" in pruned.output
    assert sum(c["records"] for c in _lines(runner.invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)]).output)) == 1
