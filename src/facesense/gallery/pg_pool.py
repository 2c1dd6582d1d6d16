"""The connection side of facesense's PostgreSQL side stores (events log, unknowns): :class:`PooledStore`.

Each store opens one connection to migrate its tables (:class:`~facesense.gallery.pg_schema.PgSchema`),
then keeps a small pool; every operation runs in one pooled transaction (:meth:`PooledStore._db`),
with psycopg's and the pool's errors turned into one-line :class:`~facesense.errors.GalleryError`
messages that never show the password.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from facesense.errors import ConfigError, GalleryError
from facesense.gallery.location import display_postgres_url

__all__ = ["CONNECT_TIMEOUT_S", "POOL_MAX", "POOL_MIN", "PooledStore", "connection_error", "conninfo", "first_line"]

POOL_MIN, POOL_MAX = 1, 2
CONNECT_TIMEOUT_S = 10


def conninfo(url: str) -> str:
    """``url`` as psycopg takes it (``postgres://`` and ``postgresql+driver://`` accepted).

    Raises:
        ConfigError: not a PostgreSQL URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{display_postgres_url(url)} is not a postgresql:// URL")
    return f"postgresql://{rest}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_error(exc: BaseException, display: str, kind: str, clean: Callable[[str], str]) -> GalleryError | None:
    """The one-line error for a failed database call or an unusable pool, or ``None`` for
    anything else (which the caller re-raises). ``kind`` names the database in the message
    (``gallery``, ``events``, ...); ``clean`` strips secrets from the driver's text."""
    if isinstance(exc, psycopg.Error):
        return GalleryError(f"{display}: {kind} database error ({clean(first_line(exc))})")
    from psycopg_pool import PoolClosed, PoolTimeout

    if isinstance(exc, PoolTimeout | PoolClosed):
        return GalleryError(f"{display}: no {kind} database connection ({first_line(exc)})")
    return None


class PooledStore:
    """A PostgreSQL store's pool, transactions, errors and lifecycle.

    Subclasses set ``what`` (``"events log"``, ``"unknowns store"``: the messages' noun)
    and ``kind`` (``"events"``, ``"unknowns"``: the application name's and the
    database errors' word) and call :meth:`_open` from ``__init__``.
    """

    what = "store"
    kind = "store"

    def _open(self, url: str, migrate: Callable[[psycopg.Connection[tuple[Any, ...]]], object]) -> None:
        """Migrate the tables on one connection, then open the pool.

        Raises:
            ConfigError: not a PostgreSQL URL.
            GalleryError: the server cannot be reached or the migration fails.
        """
        self._display = display_postgres_url(url)
        self._password = urlsplit(url).password or ""
        info = conninfo(url)
        self._lock = threading.Lock()
        self._closed = False
        kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": f"facesense-{self.kind}"}
        try:
            first = psycopg.connect(info, **kwargs)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(first_line(exc))}") from exc
        try:
            migrate(first)
        except psycopg.Error as exc:
            raise GalleryError(f"{self._display}: cannot open the {self.what} ({self._clean(first_line(exc))})") from exc
        finally:
            first.close()
        try:
            self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
                info, kwargs=kwargs, min_size=POOL_MIN, max_size=POOL_MAX, open=True,
                check=ConnectionPool.check_connection, name=f"facesense-{self.kind}",
            )  # fmt: skip
            self._pool.wait(timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # psycopg_pool.PoolTimeout or psycopg.Error
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(first_line(exc))}") from exc

    def _clean(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection inside one transaction, errors translated into GalleryError."""
        if self._closed:
            raise GalleryError(f"{self._display}: the {self.what} is closed")
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except Exception as exc:
            error = connection_error(exc, self._display, self.kind, self._clean)
            if error is None:
                raise
            raise error from exc

    @property
    def location(self) -> str:
        """The URL, without its password."""
        return self._display

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        with self._lock:
            self._closed = True
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
