"""Where a gallery lives, and :func:`open_gallery`, the one way to open one.

A gallery is named by a file path or by a URL::

    gallery.db                      an SQLite file (relative to the working directory)
    ~/faces/gallery.db              an SQLite file (``~`` is expanded)
    sqlite:///gallery.db            the same file, as a URL (three slashes: relative path)
    sqlite:////srv/faces/g.db       an absolute path (four slashes), as SQLAlchemy spells it
    postgresql://user@host:port/db  PostgreSQL + pgvector (``postgres://`` too)

Text that looks like a URL (``scheme://...`` or ``scheme:/...``) is never taken for a
file name: an unknown scheme raises :class:`~facesense.errors.ConfigError` with a
did-you-mean, and nothing is created on disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.gallery.base import GalleryStore
    from facesense.gallery.events import EventLog

__all__ = [
    "open_event_log","GalleryLocation", "open_gallery", "parse_location"]

_SQLITE_SCHEMES = ("sqlite",)
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_KNOWN_SCHEMES = (*_SQLITE_SCHEMES, *_POSTGRES_SCHEMES)
# A scheme of two or more letters then ":/" (one-letter ones are Windows drives, C:/...),
# or a known scheme then ":" ("sqlite:gallery.db" is a mistyped URL, not a file name).
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):(?P<slash>/?)")
_FORMS = "a file path, sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH"


@dataclass(frozen=True)
class GalleryLocation:
    """A parsed gallery location.

    Attributes:
        kind: the store, ``"sqlite"`` or ``"postgresql"``.
        path: the SQLite file (``~`` expanded, not resolved); empty for PostgreSQL.
        display: how to show it to a user (a path, or a URL without its password).
        url: the PostgreSQL URL as given (with its password); empty for SQLite.
    """

    kind: str
    path: Path
    display: str
    url: str = ""


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def display_postgres_url(url: str) -> str:
    """A PostgreSQL ``url`` without its password (in the user part or a ``password=`` option)."""
    from urllib.parse import parse_qsl, urlencode

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, v) for k, v in pairs if k.lower() != "password"], safe="/")
    return parts._replace(netloc=netloc, query=query).geturl()


def _base_scheme(scheme: str) -> str:
    return scheme.lower().split("+", 1)[0]


def parse_location(url_or_path: str | os.PathLike[str] | None) -> GalleryLocation:
    """Parse a gallery path or URL (see the module docstring) without touching the disk.

    Args:
        url_or_path: a path, a URL, or ``None`` for ``$FACESENSE_DB`` (a path or URL) or,
            when unset, ``gallery.db`` in the user data directory.

    Raises:
        ConfigError: a URL of an unsupported or unknown kind, or a malformed ``sqlite:`` URL.
    """
    from facesense.gallery.sqlite import DB_ENV, default_db_path

    if url_or_path is None:
        env = os.environ.get(DB_ENV)
        if not env:
            path = default_db_path()
            return GalleryLocation("sqlite", path, str(path))
        url_or_path = env
    is_path_object = not isinstance(url_or_path, str)
    text = os.fspath(url_or_path)
    if not isinstance(text, str):
        raise ConfigError(f"a gallery location must be text or a path, got {type(text).__name__}")
    if not text.strip():
        raise ConfigError(f"the gallery location is empty; give {_FORMS}")
    match = _URL_RE.match(text)
    if match is None:
        path = Path(text).expanduser()
        return GalleryLocation("sqlite", path, str(path))
    scheme = match.group("scheme")
    base = _base_scheme(scheme)
    if not match.group("slash") and base not in _KNOWN_SCHEMES:
        path = Path(text).expanduser()  # "notes:2024.db": a file name with a colon
        return GalleryLocation("sqlite", path, str(path))
    shown = _redact(text)
    if base in _POSTGRES_SCHEMES:
        if not match.group("slash") or not text.partition(":")[2].startswith("//"):
            raise ConfigError(f"{shown} is not a well-formed PostgreSQL URL; give postgresql://USER@HOST:PORT/DATABASE")
        return GalleryLocation("postgresql", Path(), display_postgres_url(text), url=text)
    if base not in _SQLITE_SCHEMES:
        from facesense.choices import did_you_mean

        raise ConfigError(
            f"unknown gallery URL scheme {scheme!r} in {shown}{did_you_mean(base, list(_KNOWN_SCHEMES))}; "
            f"give {_FORMS}"
        )
    if scheme.lower() != "sqlite":
        raise ConfigError(f"unknown gallery URL scheme {scheme!r} in {shown} (did you mean 'sqlite'?); give {_FORMS}")
    if is_path_object:
        # pathlib folds "sqlite:///a" and "sqlite:////a" into the same "sqlite:/a".
        raise ConfigError(f"{text!r} is an sqlite URL that lost its slashes in a file path; pass it as text")
    return _parse_sqlite_url(text, shown)


def _parse_sqlite_url(text: str, shown: str) -> GalleryLocation:
    if not text.lower().startswith("sqlite:///"):
        if text.lower() in ("sqlite:", "sqlite:/", "sqlite://"):
            raise ConfigError(f"{shown} names no file (in-memory galleries are not supported); give {_FORMS}")
        if text.lower().startswith("sqlite://"):
            raise ConfigError(f"{shown}: sqlite URLs take no host (sqlite:///PATH has three slashes); give {_FORMS}")
        raise ConfigError(f"{shown} is not a well-formed sqlite URL; give {_FORMS}")
    rest = text[len("sqlite:///") :]
    if "?" in rest or "#" in rest:
        raise ConfigError(f"{shown}: sqlite gallery URLs take no ?options or #fragment (read-only is chosen by open_gallery)")
    raw = unquote(rest)
    if not raw or raw in ("/", ":memory:"):
        raise ConfigError(f"{shown} names no file (in-memory galleries are not supported); give {_FORMS}")
    if "\x00" in raw:
        raise ConfigError(f"{shown}: the path contains a NUL character")
    path = Path(raw).expanduser()
    return GalleryLocation("sqlite", path, str(path))


def open_gallery(
    url_or_path: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    read_only: bool | None = None,
) -> GalleryStore:
    """Open the gallery a path or URL names (see the module docstring).

    Args:
        url_or_path: a path, ``sqlite:///...``, or ``None`` for the default location
            (``$FACESENSE_DB``, else ``gallery.db`` in the user data directory).
        create: create an SQLite file (and its folder) when missing; with ``False`` a
            missing file raises GalleryError and nothing is created.
        read_only: ``True`` opens read-only; ``False`` requires write access; ``None``
            opens read-only exactly when the gallery cannot be written.

    Returns:
        The store (an :class:`~facesense.gallery.sqlite.SQLiteGallery` for now); close it
        (it is a context manager).

    Raises:
        ConfigError: an unsupported or unknown URL (nothing is created).
        GalleryError: the gallery is missing, foreign, too new, or read-only when
            ``read_only=False``.
    """
    from facesense.gallery.sqlite import SQLiteGallery

    location = parse_location(url_or_path)
    if location.kind == "postgresql":
        from facesense.gallery.postgres import PostgresGallery  # psycopg is imported only here

        return PostgresGallery(location.url, create=create, read_only=read_only)
    return SQLiteGallery(location.path, create=create, read_only=read_only)


def open_event_log(
    location: GalleryLocation,
    *,
    path: str | os.PathLike[str] | None = None,
    keep_events: int = 10_000,
    keep_days: float = 30.0,
) -> EventLog:
    """Open the events log that belongs to a gallery.

    Args:
        location: the gallery's location (:func:`parse_location`).
        path: where the log lives instead of its default place: for an SQLite gallery
            ``<gallery stem>.events.db`` beside the gallery file; for a PostgreSQL
            gallery the events are in the same database
            (:class:`~facesense.gallery.postgres_events.PostgresEventStore`), and a
            ``path`` puts them in an SQLite file there instead.
        keep_events, keep_days: pruning: the newest ``keep_events`` events of the last
            ``keep_days`` days stay.

    Raises:
        GalleryError: the log cannot be created or opened.
        ConfigError: bad pruning settings.
    """
    from facesense.gallery.sqlite_events import SQLiteEventStore

    if path is None:
        if location.kind == "sqlite":
            path = location.path.with_name(location.path.stem + ".events.db")
        else:
            # Events live in the gallery's own database, so every machine sees them all.
            from facesense.gallery.postgres_events import PostgresEventStore  # psycopg is imported only here

            return PostgresEventStore(location.url, keep_events=keep_events, keep_days=keep_days)
    return SQLiteEventStore(path, keep_events=keep_events, keep_days=keep_days)
