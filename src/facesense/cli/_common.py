"""Shared CLI plumbing: logging to stderr, error to exit-code mapping, JSON output."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from facesense.errors import FacesenseError

logger = logging.getLogger("facesense.cli")


def setup_logging(*, verbose: int = 0, quiet: bool = False) -> None:
    """Send facesense's logs to stderr at a level set by -v / -q."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose > 1 else "%(levelname)s: %(message)s"))
    root = logging.getLogger("facesense")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class FacesenseGroup(click.Group):
    """A click group that turns :class:`FacesenseError` into a one-line message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacesenseError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def emit_json(obj: Any) -> None:
    """Write one JSON object as a line on stdout."""
    click.echo(json.dumps(obj, separators=(",", ":"), allow_nan=False))


def progress(iterable: Any, *, length: int | None = None, label: str = "") -> Any:
    """A progress bar on stderr when stderr is a terminal; the bare iterable otherwise."""
    if not sys.stderr.isatty():
        return _Passthrough(iterable)
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr, show_pos=True)


class _Passthrough:
    """Context manager stand-in for click.progressbar when there is no terminal."""

    def __init__(self, iterable: Any) -> None:
        self._iterable = iterable

    def __enter__(self) -> Any:
        return self._iterable

    def __exit__(self, *exc: object) -> None:
        return None


@contextlib.contextmanager
def progress_callback(label: str) -> Iterator[Callable[[int, int], None]]:
    """An ``on_progress(done, total)`` callback driving a progress bar on stderr (terminals only)."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            cm = progress(range(total), length=total, label=label)
            state["cm"], state["bar"] = cm, cm.__enter__()
        bar = state["bar"]
        if hasattr(bar, "update"):
            bar.update(done - state.get("done", 0))
        state["done"] = done

    try:
        yield update
    finally:
        if "cm" in state:
            state["cm"].__exit__(None, None, None)


DB_HELP = "Gallery file [env FACESENSE_DB; default: gallery.db in the user data directory]."


def embedder_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--embedder fusion|facenet|dlib`` for the evaluation commands."""
    return click.option(
        "--embedder",
        "embedder_kind",
        type=click.Choice(["fusion", "facenet", "dlib"]),
        default="fusion",
        show_default=True,
        help="Embedding model: FaceNet + dlib ResNet fusion (the default), or one of them alone.",
    )


def db_option(help: str = DB_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--db`` option every gallery-using command shares (``$FACESENSE_DB`` too)."""
    return click.option(
        "--db", "db", type=click.Path(dir_okay=False, path_type=Path), envvar="FACESENSE_DB", default=None, help=help
    )
