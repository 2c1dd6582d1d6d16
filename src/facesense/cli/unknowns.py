"""``facesense unknowns``: the recurring unknowns ``watch`` recorded, and a person's corrections.

A thin adapter over :class:`facesense.gallery.unknowns.StoredUnknowns` on the unknowns
store of the gallery ``--db`` names (:func:`facesense.gallery.unknowns.open_unknown_store`).
``name`` enrolls a cluster's face crops through :func:`facesense.unknowns.enroll.enroll_named`
(the checks of ``facesense enroll``), then forgets the cluster.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import db_option, emit_json
from facesense.errors import GalleryError, ImageError

if TYPE_CHECKING:
    from facesense.gallery.unknowns import StoredUnknowns
    from facesense.unknowns import ClusterSummary, NamedCluster

logger = logging.getLogger("facesense.cli")

__all__ = ["unknowns"]


@contextlib.contextmanager
def _book(db: str | None) -> Iterator[StoredUnknowns]:
    """The stored unknowns of the gallery ``db`` names (closed afterwards).

    Raises:
        GalleryError: nothing was ever recorded for that gallery, or the store is unusable.
    """
    from facesense.gallery.location import parse_location
    from facesense.gallery.unknowns import StoredUnknowns, open_unknown_store

    location = parse_location(db)
    if location.kind == "sqlite" and not location.path.with_name(location.path.stem + ".unknowns.db").exists():
        raise GalleryError(
            f"no unknowns recorded for {location.display} (`facesense watch SOURCE --db {location.display}` records them)"
        )
    store = open_unknown_store(location)
    try:
        state, _ = store.load()
        if state is None:
            raise GalleryError(f"no unknowns recorded for {location.display} yet")
        yield StoredUnknowns(store, state.model_id)
    finally:
        store.close()


def _summary_dict(s: ClusterSummary, min_size: int) -> dict[str, Any]:
    return {"cluster": s.cluster_id, **s.to_dict(min_size)}


@click.group("unknowns")
def unknowns() -> None:
    """Recurring unknown faces that `facesense watch` recorded, grouped into visitors.

    Each track that stayed unknown is one record (its mean embedding and a few face
    crops); records of the same face are grouped into clusters. Name a cluster to
    enroll it, merge two that are one person, ignore one (a poster), or remove a wrong
    face. Exit 0 when done, otherwise a one-line error and nothing changed (6 for a
    missing or unusable store, 8 for an unknown cluster or record, 2 for a bad name).
    """


@unknowns.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also faces seen once and ignored clusters.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cluster.")
@db_option()
def unknowns_list(show_all: bool, as_json: bool, db: str | None) -> None:
    """Clusters last seen first: id, records (tracks), faces, first / last seen, cameras."""
    with _book(db) as book:
        clusterer = book.clusterer
        min_size = clusterer.config.min_size
        rows = clusterer.clusters(min_size=1 if show_all else None, include_ignored=show_all)
        total = len(clusterer)
    if as_json:
        for s in rows:
            emit_json(_summary_dict(s, min_size))
        return
    if not rows:
        click.echo(f"no recurring unknowns ({total} record(s) seen once; --all lists them)", err=True)
        return
    click.echo(f"{'cluster':>7}  {'records':>7}  {'faces':>5}  {'first seen':<25}  {'last seen':<25}  cameras")
    for s in rows:
        d = _summary_dict(s, min_size)
        flag = "  (ignored)" if s.ignored else ""
        click.echo(
            f"{s.cluster_id:>7}  {s.size:>7}  {s.faces:>5}  {d['first_seen']:<25}  {d['last_seen']:<25}"
            f"  {', '.join(s.sources) or '-'}{flag}"
        )
    click.echo(f"{len(rows)} cluster(s), {total} record(s) in all", err=True)


@unknowns.command("show")
@click.argument("cluster", type=int)
@click.option("--crops", "crops_dir", type=click.Path(file_okay=False, path_type=Path), help="Write the cluster's face crops here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@db_option()
def unknowns_show(cluster: int, crops_dir: Path | None, as_json: bool, db: str | None) -> None:
    """One cluster: its records (tracks) with when and where they were seen."""
    from facesense.gallery.events import iso_time

    with _book(db) as book:
        clusterer = book.clusterer
        summary = clusterer.summary(cluster)
        records = [(rid, clusterer.record(rid)) for rid in summary.record_ids]
        min_size = clusterer.config.min_size
    written: list[str] = []
    if crops_dir is not None:
        written = _write_crops(crops_dir, cluster, records)
    if as_json:
        out = _summary_dict(summary, min_size)
        out["record_list"] = [
            {"record": rid, "faces": r.faces, "first_seen": iso_time(r.first_seen), "last_seen": iso_time(r.last_seen),
             "source": r.source, "track_id": r.track_id, "crops": len(r.crops)}
            for rid, r in records
        ]  # fmt: skip
        out["crop_files"] = written
        emit_json(out)
        return
    d = _summary_dict(summary, min_size)
    ignored = ", ignored" if summary.ignored else ""
    click.echo(
        f"cluster {cluster}: {summary.size} record(s), {summary.faces} face(s), seen {d['first_seen']} .. "
        f"{d['last_seen']} on {', '.join(summary.sources) or '-'}{ignored}"
    )
    for rid, r in records:
        click.echo(f"  record {rid}  {iso_time(r.first_seen)}  {r.faces} face(s)  {r.source or '-'}  track {r.track_id}")
    if written:
        click.echo(f"wrote {len(written)} crop(s) to {crops_dir}", err=True)


def _write_crops(folder: Path, cluster: int, records: list[tuple[int, Any]]) -> list[str]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for rid, record in records:
            for rank, crop in enumerate(record.crops):
                path = folder / f"cluster{cluster}-record{rid}-{rank}.jpg"
                path.write_bytes(crop.jpeg)
                out.append(str(path))
        return out
    except OSError as exc:
        raise ImageError(f"{folder}: cannot write crops ({exc.strerror or exc})") from exc


@unknowns.command("name")
@click.argument("cluster", type=int)
@click.argument("name")
@db_option()
def unknowns_name(cluster: int, name: str, db: str | None) -> None:
    """Enroll CLUSTER's face crops as NAME (the checks of `facesense enroll`), then forget the cluster."""
    from facesense.gallery.base import validate_name

    person = validate_name(name)
    with _book(db) as book:
        book.clusterer.summary(cluster)  # an unknown id fails before any model loads
        added = book.name(cluster, person, lambda named: _enroll(db, named))
    click.echo(f"named cluster {cluster} {person!r}: {added} sample(s) enrolled", err=True)


def _enroll(db: str | None, named: NamedCluster) -> int:
    """Enroll the crops of a named cluster (:func:`facesense.unknowns.enroll.enroll_named`).

    The models load only here, after the cluster was found.
    """
    from facesense.analyzer import FaceAnalyzer
    from facesense.cli._common import open_db
    from facesense.detect import make_detector
    from facesense.embed import make_embedder
    from facesense.unknowns.enroll import enroll_named

    with contextlib.closing(open_db(db, create=True, read_only=False)) as gallery:
        analyzer = FaceAnalyzer(detector=make_detector(use="image"), embedder=make_embedder())
        return enroll_named(gallery, analyzer, named)


@unknowns.command("merge")
@click.argument("into", type=int)
@click.argument("other", type=int)
@db_option()
def unknowns_merge(into: int, other: int, db: str | None) -> None:
    """Merge cluster OTHER into INTO (they are one person)."""
    with _book(db) as book:
        book.merge(into, other)
        size = book.clusterer.summary(into).size
    click.echo(f"merged cluster {other} into {into}: {size} record(s)", err=True)


@unknowns.command("ignore")
@click.argument("cluster", type=int)
@click.option("--undo", is_flag=True, help="Stop ignoring it.")
@db_option()
def unknowns_ignore(cluster: int, undo: bool, db: str | None) -> None:
    """Ignore CLUSTER (a poster, a TV): later tracks that join it are not reported."""
    with _book(db) as book:
        book.ignore(cluster, not undo)
    click.echo(f"cluster {cluster} {'no longer ignored' if undo else 'ignored'}", err=True)


@unknowns.command("remove")
@click.argument("record", type=int)
@db_option()
def unknowns_remove(record: int, db: str | None) -> None:
    """Take RECORD (a wrong face) out of its cluster; the rest stays together."""
    with _book(db) as book:
        cluster = book.remove(record)
    where = f"cluster {cluster}" if cluster is not None else "its cluster, now gone"
    click.echo(f"removed record {record} from {where}", err=True)


@unknowns.command("prune")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None, help="Drop records last seen longer ago [default: 30].")
@click.option("--keep", type=click.IntRange(min=0), default=None, help="Keep at most this many records [default: 5000].")
@db_option()
def unknowns_prune(days: float | None, keep: int | None, db: str | None) -> None:
    """Drop old records now (watch also prunes as it records); ignored clusters keep their newest."""
    import time

    with _book(db) as book:
        dropped = book.prune(time.time(), keep_days=days, keep_records=keep)
    click.echo(f"pruned {len(dropped)} record(s)", err=True)
