"""``facesense correct EVENT_ID --not X | --is Y``: correct a wrongly named face.

A thin adapter over :class:`facesense.corrections.Corrections`: the event comes from the
events log ``facesense serve`` keeps beside the gallery (``<gallery>.events.db`` for an
SQLite gallery, the gallery's own database for PostgreSQL).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facesense.cli._common import db_option, emit_json, open_db
from facesense.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from facesense.analyzer import FaceAnalyzer
    from facesense.gallery.location import GalleryLocation

__all__ = ["correct"]

# Opening the log must not prune events the server keeps under its own limits.
_KEEP_ALL_EVENTS = 2**62
_KEEP_ALL_DAYS = 1e9

CORRECT_RULE = """
\b
Exit status: 0 when the correction is stored. Otherwise a one-line error and nothing
changed: 2 for neither or both of --not and --is, 6 for a missing, read-only or
unusable gallery (or another model's face), 7 when the face fails the enrollment
checks (--is), 8 for a missing event, events file or person, 9 for an event that
keeps no face embedding, was not recognised as anybody (--is), or was corrected already.
"""


@click.command("correct", epilog=CORRECT_RULE)
@click.argument("event_id", type=click.IntRange(min=1))
@click.option("--not", "not_name", metavar="NAME", help="The face is not NAME (an enrolled person): store it as NAME's negative.")
@click.option(
    "--is", "is_name", metavar="NAME",
    help="The face is NAME (an enrolled person), not whom it was recognised as: NAME gets the face as a sample "
    "(after the enrollment checks on the event's crop), the recognised name a negative, in one transaction.",
)  # fmt: skip
@click.option(
    "--events-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Events file [default: <gallery>.events.db beside an SQLite gallery; in the database for PostgreSQL].",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print what was stored as one JSON object on stdout.")
@db_option()
def correct(
    event_id: int, not_name: str | None, is_name: str | None, events_db: Path | None, as_json: bool, db: str | None
) -> None:
    """Correct the face of event EVENT_ID (an id from the events page or GET /api/events):
    --not X says it is not X, --is Y says it is Y. Recognition applies it at once
    (running `watch` and `serve` refit when the gallery changes)."""
    from facesense.corrections import Corrections
    from facesense.gallery.location import open_event_log, parse_location

    if (not_name is None) == (is_name is None):
        raise ConfigError("give exactly one of --not NAME and --is NAME")
    location = parse_location(db)
    events_path = _events_path(location, events_db)
    with contextlib.ExitStack() as stack:
        gallery = stack.enter_context(contextlib.closing(open_db(db, read_only=False)))
        events = stack.enter_context(
            contextlib.closing(
                open_event_log(location, path=events_path, keep_events=_KEEP_ALL_EVENTS, keep_days=_KEEP_ALL_DAYS)
            )
        )
        corrections = Corrections(gallery, events, model_id=gallery.model_id or "", analyzer=_analyzer)
        if not_name is not None:
            result = corrections.not_person(event_id, not_name)
        else:
            result = corrections.is_person(event_id, is_name or "")
    if as_json:
        emit_json(result.to_dict())
    extra = f", sample #{result.sample_id} of {result.right!r}" if result.sample_id is not None else ""
    negative = f"negative #{result.negative_id} of {result.wrong!r}" if result.negative_id is not None else "no new negative"
    click.echo(f"event {event_id}: {result.correction} ({negative}{extra})", err=True)


def _events_path(location: GalleryLocation, events_db: Path | None) -> Path | None:
    """The events file to open (``None``: the gallery's database); a missing file is NotFoundError."""
    path = events_db
    if path is None and location.kind == "sqlite":
        path = location.path.with_name(location.path.stem + ".events.db")
    if path is not None and not path.is_file():
        raise NotFoundError(f"no events file {path} (the events log is kept by `facesense serve`; or pass --events-db)")
    return path


def _analyzer() -> FaceAnalyzer:
    """The default still-image analyzer, for the enrollment checks of --is (built on first use)."""
    from facesense.cli.gallery import _analyzer as default_analyzer

    return default_analyzer()
