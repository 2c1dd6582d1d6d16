"""Shared CLI plumbing: logging to stderr, error to exit-code mapping, JSON output,
the per-file error rule of the batch commands, and the options several commands share.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.errors import ConfigError, FacesenseError, ImageError

if TYPE_CHECKING:
    from facesense.gallery.base import GalleryStore

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
            report_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def report_error(exc: BaseException) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"error: {message}", err=True)


@dataclass
class FileBatch:
    """The per-file rule of ``detect``, ``embed`` and ``recognize``.

    A file that cannot be read as an image (:class:`~facesense.errors.ImageError`)
    gets one ``error:`` line on stderr (and, with ``--json``, a ``{"path", "error"}``
    record on stdout) and the rest are processed. :meth:`finish` ends the command with
    the first error's exit code only when no file at all could be processed. Any other
    error (model, gallery, options) is not the file's fault and stops the command.

    Attributes:
        total: how many files the command was given (after expanding folders).
        as_json: also write a JSON record for each failed file.
    """

    total: int
    as_json: bool = False
    done: int = 0
    failed: list[FacesenseError] = field(default_factory=list)

    def ok(self) -> None:
        """Count one processed file."""
        self.done += 1

    def fail(self, path: Path, exc: ImageError) -> None:
        """Report one file that could not be read."""
        self.failed.append(exc)
        report_error(exc)
        if self.as_json:
            emit_json({"path": str(path), "error": str(exc)})

    def finish(self) -> None:
        """Exit with the first error's code when nothing was processed.

        Raises:
            click.exceptions.Exit: no file could be processed.
        """
        if not self.failed:
            return
        if self.done == 0:
            raise click.exceptions.Exit(self.failed[0].exit_code)
        logger.warning("%d of %d file(s) could not be read", len(self.failed), self.total)


class EnumChoice(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A closed choice backed by a library enum, resolved lazily.

    The enum's module is imported on first use (help text or parsing), so that
    ``facesense --help`` stays cheap. A typo gets the closest choice suggested
    (:func:`facesense.choices.parse_choice`), and the value arrives as the enum member.

    Args:
        enum_path: ``"module:EnumClass"``.
        what: what the choice is called in messages (``"embedder"``).
    """

    name = "choice"

    def __init__(self, enum_path: str, what: str) -> None:
        self._enum_path = enum_path
        self._enum: type[enum.Enum] | None = None
        self.what = what

    @property
    def enum(self) -> type[enum.Enum]:
        """The enum class (imported on first use)."""
        if self._enum is None:
            module, _, name = self._enum_path.partition(":")
            self._enum = getattr(importlib.import_module(module), name)
        return self._enum

    @property
    def choices(self) -> list[str]:
        """The enum's values, in definition order."""
        return [str(member.value) for member in self.enum]

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[" + "|".join(self.choices) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from facesense.choices import parse_choice

        try:
            return parse_choice(self.enum, value, self.what)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete.lower())]


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


DB_HELP = (
    "Gallery: a file path or sqlite:///PATH [env FACESENSE_DB; default: gallery.db in the user data directory]."
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def embedder_option() -> Decorator:
    """``--embedder dlib+sface|facenet|...`` (:class:`facesense.embed.EmbedderKind`), default :data:`facesense.embed.DEFAULT_EMBEDDER`."""
    from facesense.embed.factory import DEFAULT_EMBEDDER

    return click.option(
        "--embedder",
        "embedder_kind",
        type=EnumChoice("facesense.embed:EmbedderKind", "embedder"),
        default=DEFAULT_EMBEDDER.value,
        show_default=True,
        help="Embedding model: the default dlib+sface (dlib ResNet + SFace), a network alone, or another fusion "
        "(facenet+dlib was the default before; facesense.models.registry.EMBEDDERS).",
    )


def detector_option() -> Decorator:
    """``--detector yunet|mtcnn`` (:class:`facesense.detect.DetectorKind`), default :data:`facesense.detect.DEFAULT_DETECTOR`."""
    from facesense.detect.factory import DEFAULT_DETECTOR

    return click.option(
        "--detector",
        "detector_kind",
        type=EnumChoice("facesense.detect:DetectorKind", "detector"),
        default=DEFAULT_DETECTOR.value,
        show_default=True,
        help="Face detector.",
    )


def rotations_option() -> Decorator:
    """``--rotations``: also search turned copies for tilted faces (``DEFAULTS[use].rotation_angles``)."""
    return click.option(
        "--rotations",
        is_flag=True,
        help="Also find tilted and upside-down faces (searches copies turned by 90, -90 and 180 degrees, "
        "photos +-45 too; about 6x the detection time on photos, 1.6x in video).",
    )


def matcher_option() -> Decorator:
    """``--matcher knn|svm|mean`` (:class:`facesense.match.MatcherKind`)."""
    return click.option(
        "--matcher",
        "matcher_kind",
        type=EnumChoice("facesense.match:MatcherKind", "matcher"),
        default="knn",
        show_default=True,
        help="Matching rule: k nearest samples, a linear SVM, or each person's mean.",
    )


def min_face_option(use: str) -> Decorator:
    """``--min-face PX``; unset means the detector's default for ``use`` ("image" or "video")."""
    return click.option(
        "--min-face",
        "min_face_px",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help=f"Smallest face to find, pixels [default: the detector's {use} default, facesense.detect.DEFAULTS].",
    )


def db_option(help: str = DB_HELP) -> Decorator:
    """The ``--db`` option every gallery-using command shares (``$FACESENSE_DB`` too)."""
    return click.option("--db", "db", metavar="PATH|URL", envvar="FACESENSE_DB", default=None, help=help)


def open_db(db: str | None, *, create: bool = False, read_only: bool | None = None) -> GalleryStore:
    """The gallery ``--db`` names, through :func:`facesense.gallery.open_gallery`.

    Args:
        db: a path or URL; ``None`` for the default gallery file.
        create: create a missing SQLite file (write commands only).
        read_only: ``False`` for commands that write (a read-only gallery is then
            refused up front, saying so); ``None`` for commands that only read: the
            store opens read-only exactly when it cannot write, so they work on a
            gallery the user cannot write.

    Raises:
        GalleryError: missing (and not ``create``), not a gallery, too new or unusable.
        ConfigError: a URL scheme facesense does not support.
    """
    from facesense.gallery import open_gallery

    if db is None:
        from facesense.gallery.sqlite import default_db_path

        db = str(default_db_path())
    return open_gallery(db, create=create, read_only=read_only)
