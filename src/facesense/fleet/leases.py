"""Camera leases in PostgreSQL: which worker runs which camera, never two at once.

Schema (format version 1), in the gallery's database, created by :data:`MIGRATIONS`
(versioned like :mod:`facesense.gallery.postgres`: applied in one transaction under an
advisory lock of their own, a newer format version refused)::

    facesense_fleet_meta    (key TEXT PRIMARY KEY, value TEXT)   application, format_version, created
    facesense_workers       (id PRIMARY KEY, host, pid, started_at, heartbeat_at, expires_at)
    facesense_camera_leases (name PRIMARY KEY, url, owner -> a worker id or NULL, token,
                             expires_at, heartbeat_at, claimed_at, host, pid, state,
                             stats JSONB, updated_at)

The rules, all decided by the database's clock (``now()``), never the workers':

- **claim**: a camera is free when it has no owner or its lease expired. A worker
  claims free cameras in one short transaction (``SELECT ... FOR UPDATE SKIP LOCKED``,
  so two workers never wait on each other or take the same row); each claim bumps the
  camera's **fencing token**, so a token names one tenure of one worker.
- **heartbeat**: every ``heartbeat_s`` a worker extends its leases to ``now() +
  lease_s`` and renews its own row, but only for rows that still carry its id and
  token and have not expired. A lease missing from the answer is lost (taken over,
  or expired while the worker could not reach the database): the worker must stop
  that camera at once. A worker also stops a camera by itself when it could not renew
  it for ``lease_s`` by its own monotonic clock, measured from *before* it sent the
  last successful heartbeat, so it has stopped before the database lets anyone take
  the camera over.
- **balance**: while other workers are alive (their row's ``expires_at`` is in the
  future), a worker holds at most ``ceil(cameras / live workers)`` cameras and gives
  back the rest; cameras of dead workers are free once their leases expire, and are
  taken by whoever has room (all of them, when only one worker is left).
- **release**: a worker that stops (SIGTERM) releases its leases at once: owner NULL,
  state ``released``, so another worker claims them on its next round.

:class:`LeaseTable` is one worker's handle on these tables; :func:`camera_leases`
reads them for anyone (``GET /api/sources``, tests).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg

from facesense.errors import ConfigError, GalleryError
from facesense.gallery.location import display_postgres_url
from facesense.gallery.pg_pool import first_line
from facesense.gallery.pg_schema import PgSchema

logger = logging.getLogger(__name__)

__all__ = [
    "APPLICATION",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "CameraLease",
    "HeartbeatResult",
    "Lease",
    "LeaseState",
    "LeaseTable",
    "camera_leases",
    "redact_url",
]

APPLICATION = "facesense-fleet"
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000  # a heartbeat stuck longer than this is a failed heartbeat
_MIGRATION_LOCK = 0x4653464C  # "FSFL": the advisory lock held while migrating

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE facesense_fleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE facesense_workers ("
            " id TEXT PRIMARY KEY,"
            " host TEXT NOT NULL,"
            " pid INTEGER NOT NULL,"
            " started_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
            " heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
            " expires_at TIMESTAMPTZ NOT NULL)",
            "CREATE TABLE facesense_camera_leases ("
            " name TEXT PRIMARY KEY,"
            " url TEXT NOT NULL,"
            " owner TEXT,"
            " token BIGINT NOT NULL DEFAULT 0,"
            " expires_at TIMESTAMPTZ,"
            " heartbeat_at TIMESTAMPTZ,"
            " claimed_at TIMESTAMPTZ,"
            " host TEXT,"
            " pid INTEGER,"
            " state TEXT NOT NULL DEFAULT 'free',"
            " stats JSONB NOT NULL DEFAULT '{}'::jsonb,"
            " updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
            " CHECK ((owner IS NULL) = (expires_at IS NULL)))",
        ),
    ),
)
FORMAT_VERSION = MIGRATIONS[-1][0]
SCHEMA = PgSchema(
    what="fleet lease table", application=APPLICATION, meta_table="facesense_fleet_meta",
    lock_key=_MIGRATION_LOCK, migrations=MIGRATIONS,
)  # fmt: skip


class LeaseState:
    """The ``state`` column's values (text in the database, for any reader)."""

    FREE = "free"  # never claimed
    STARTING = "starting"  # claimed, the pipeline is being built
    RUNNING = "running"
    FAILED = "failed"  # the owner could not run it (bad URL ...); it keeps retrying
    RELEASED = "released"  # given back by a worker that stopped or rebalanced

    ALL = (FREE, STARTING, RUNNING, FAILED, RELEASED)


def redact_url(url: str) -> str:
    """A camera URL without its password (``rtsp://user:***@host/...``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)).geturl()


def _conninfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{display_postgres_url(url)}: camera leases need a postgresql:// database")
    return f"postgresql://{rest}"


@dataclass(frozen=True)
class Lease:
    """A camera this worker holds.

    Attributes:
        camera: the camera's name.
        url: what to open (with its password, as registered).
        token: the fencing token of this tenure (a later claim has a larger one).
        renewed_at: this process's ``time.monotonic()`` just *before* the heartbeat (or
            claim) that last extended the lease was sent.
    """

    camera: str
    url: str
    token: int
    renewed_at: float


@dataclass(frozen=True)
class HeartbeatResult:
    """What one heartbeat found.

    Attributes:
        renewed: the leases extended (with their new ``renewed_at``).
        lost: cameras that were held and are not any more (taken over, or expired).
    """

    renewed: tuple[Lease, ...]
    lost: tuple[str, ...]


@dataclass(frozen=True)
class CameraLease:
    """One row of the lease table as anyone may read it (:func:`camera_leases`).

    Attributes:
        name, url: the camera (the URL without its password).
        owner: the worker id holding it, or ``None``.
        token: its fencing token (0: never claimed).
        live: the lease has not expired (by the database's clock).
        expires_at, heartbeat_at, claimed_at: database times, or ``None``.
        host, pid: where its owner runs.
        state: a :class:`LeaseState` value.
        stats: what the owner last reported (``fps``, ``lag_ms``, ``dropped``, ``frames`` ...).
    """

    name: str
    url: str
    owner: str | None
    token: int
    live: bool
    expires_at: datetime | None
    heartbeat_at: datetime | None
    claimed_at: datetime | None
    host: str | None
    pid: int | None
    state: str
    stats: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (times as ISO 8601)."""

        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "name": self.name, "url": self.url, "owner": self.owner if self.live else None,
            "token": self.token, "live": self.live, "state": self.state if self.live or self.owner is None else "expired",
            "worker": None if not self.live else {"id": self.owner, "host": self.host, "pid": self.pid},
            "expires_at": iso(self.expires_at), "heartbeat_at": iso(self.heartbeat_at),
            "claimed_at": iso(self.claimed_at), "stats": dict(self.stats),
        }  # fmt: skip


def migrate(conn: psycopg.Connection[Any], display: str) -> None:
    """Bring the lease tables to :data:`FORMAT_VERSION` (one transaction, under an advisory lock).

    Raises:
        GalleryError: foreign tables, or a newer format version.
    """
    SCHEMA.migrate(conn, display)


class LeaseTable:
    """One worker's handle on the lease tables (one connection, guarded by a lock).

    Args:
        url: ``postgresql://...`` (the gallery's database).
        worker_id: this worker's id (default: ``host:pid:random``); unique per process.
        lease_s: how long a lease lasts without a heartbeat.

    Raises:
        ConfigError: not a PostgreSQL URL, or a bad ``lease_s``.
        GalleryError: the database cannot be reached, or the tables are foreign or newer.

    Every method is one short transaction. A database error raises GalleryError and
    the next call reconnects.
    """

    def __init__(self, url: str, *, worker_id: str | None = None, lease_s: float = 10.0) -> None:
        if not (math.isfinite(lease_s) and lease_s > 0):
            raise ConfigError(f"lease_s must be a positive number, got {lease_s}")
        self._conninfo = _conninfo(url)
        self._display = display_postgres_url(url)
        self._password = urlsplit(url).password or ""
        self.lease_s = float(lease_s)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = worker_id or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._held: dict[str, Lease] = {}
        self._known: tuple[str, ...] = ()  # the cameras this worker can run (register)
        with self._db():
            pass  # connect and migrate now: fail fast

    # --- plumbing ------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The database URL, without its password."""
        return self._display

    def _clean(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(
            self._conninfo, connect_timeout=CONNECT_TIMEOUT_S, application_name="facesense-worker",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )  # fmt: skip
        try:
            migrate(conn, self._display)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection inside one transaction; errors as GalleryError (and a reconnect next time)."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                with self._conn.transaction():
                    yield self._conn
            except psycopg.Error as exc:
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn.close()
                    self._conn = None
                raise GalleryError(f"{self._display}: lease database error ({self._clean(first_line(exc))})") from exc

    def close(self) -> None:
        """Close the connection (leases are not released: see :meth:`release_all`)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def held(self) -> dict[str, Lease]:
        """The leases this worker believes it holds (a copy), by camera."""
        with self._lock:
            return dict(self._held)

    # --- registering ---------------------------------------------------------------

    def register(self, cameras: Mapping[str, str]) -> None:
        """Say this worker is alive, and add the cameras ``{name: url}`` it knows to the table.

        A camera already in the table keeps its owner and lease (its URL is updated).
        :meth:`claim` only claims cameras registered here: a worker whose configuration
        lacks a camera leaves it to the workers that have it.
        """
        self._known = tuple(sorted(cameras))
        with self._db() as conn:
            self._beat_worker(conn)
            for name, url in cameras.items():
                conn.execute(
                    "INSERT INTO facesense_camera_leases (name, url) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, updated_at = now()",
                    (name, url),
                )

    def _beat_worker(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO facesense_workers (id, host, pid, expires_at) "
            "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at",
            (self.worker_id, self.host, self.pid, self.lease_s),
        )

    # --- the lease cycle -----------------------------------------------------------

    def share(self) -> int:
        """How many cameras this worker may hold: ``ceil(cameras / live workers)``."""
        with self._db() as conn:
            return self._share(conn)

    def _share(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM facesense_camera_leases), "
            "(SELECT count(*) FROM facesense_workers WHERE expires_at > now() OR id = %s)",
            (self.worker_id,),
        ).fetchone()
        cameras, workers = (int(row[0]), max(1, int(row[1]))) if row is not None else (0, 1)
        return math.ceil(cameras / workers)

    def claim(self, *, limit: int | None = None) -> tuple[Lease, ...]:
        """Claim free cameras (no owner, or an expired lease) up to this worker's share.

        Args:
            limit: claim at most this many now (on top of the share rule).

        Returns:
            The new leases (each with a new fencing token).
        """
        started = time.monotonic()
        with self._db() as conn:
            self._beat_worker(conn)
            mine = int(
                (conn.execute(
                    "SELECT count(*) FROM facesense_camera_leases WHERE owner = %s AND expires_at > now()",
                    (self.worker_id,),
                ).fetchone() or (0,))[0]
            )  # fmt: skip
            room = self._share(conn) - mine
            if limit is not None:
                room = min(room, limit)
            if room <= 0:
                return ()
            # Orphans (a dead owner's expired lease) first, then cameras nobody ran, by name.
            rows = conn.execute(
                "SELECT name FROM facesense_camera_leases "
                "WHERE (owner IS NULL OR expires_at <= now()) AND name = ANY(%s) "
                "ORDER BY (owner IS NULL), name LIMIT %s FOR UPDATE SKIP LOCKED",
                (list(self._known), room),
            ).fetchall()
            if not rows:
                return ()
            claimed = conn.execute(
                "UPDATE facesense_camera_leases SET owner = %s, token = token + 1, "
                "expires_at = now() + make_interval(secs => %s), heartbeat_at = now(), claimed_at = now(), "
                "host = %s, pid = %s, state = %s, stats = '{}'::jsonb, updated_at = now() "
                "WHERE name = ANY(%s) AND (owner IS NULL OR expires_at <= now()) "
                "RETURNING name, url, token",
                (self.worker_id, self.lease_s, self.host, self.pid, LeaseState.STARTING, [r[0] for r in rows]),
            ).fetchall()
        leases = tuple(Lease(str(n), str(u), int(t), started) for n, u, t in sorted(claimed))
        with self._lock:
            for lease in leases:
                self._held[lease.camera] = lease
        for lease in leases:
            logger.info("claimed camera %s (lease token %d)", lease.camera, lease.token)
        return leases

    def heartbeat(self, stats: Mapping[str, Mapping[str, Any]] | None = None) -> HeartbeatResult:
        """Extend every lease still ours; report the lost ones (which are forgotten here).

        Args:
            stats: per camera, what to store in its row's ``stats`` (and ``state`` if
                given as ``stats[camera]["state"]``).

        Raises:
            GalleryError: the database cannot be reached (nothing is known lost yet:
                see :meth:`expired_locally`).
        """
        stats = stats or {}
        started = time.monotonic()
        held = self.held
        with self._db() as conn:
            self._beat_worker(conn)
            renewed_names: set[str] = set()
            for name, lease in held.items():
                figures = dict(stats.get(name, {}))
                state = str(figures.pop("state", LeaseState.RUNNING))
                row = conn.execute(
                    "UPDATE facesense_camera_leases SET expires_at = now() + make_interval(secs => %s), "
                    "heartbeat_at = now(), state = %s, stats = %s::jsonb, updated_at = now() "
                    "WHERE name = %s AND owner = %s AND token = %s AND expires_at > now() RETURNING name",
                    (self.lease_s, state, json.dumps(figures, allow_nan=False, default=str), name, self.worker_id, lease.token),
                ).fetchone()
                if row is not None:
                    renewed_names.add(name)
        renewed = tuple(Lease(held[n].camera, held[n].url, held[n].token, started) for n in sorted(renewed_names))
        lost = tuple(sorted(set(held) - renewed_names))
        with self._lock:
            for lease in renewed:
                if lease.camera in self._held and self._held[lease.camera].token == lease.token:
                    self._held[lease.camera] = lease
            for name in lost:
                if name in self._held and self._held[name].token == held[name].token:
                    del self._held[name]
        for name in lost:
            logger.warning("lost the lease of camera %s (token %d): stopping it", name, held[name].token)
        return HeartbeatResult(renewed=renewed, lost=lost)

    def expired_locally(self, *, margin_s: float = 0.0) -> tuple[str, ...]:
        """Cameras whose lease was not renewed for ``lease_s - margin_s`` by this process's clock.

        They may already belong to someone else (the database could not be reached):
        stop them, then :meth:`forget` them.
        """
        now = time.monotonic()
        with self._lock:
            return tuple(sorted(n for n, lease in self._held.items() if now - lease.renewed_at >= self.lease_s - margin_s))

    def still_holds(self, camera: str, token: int, *, margin_s: float = 0.0) -> bool:
        """Whether ``camera`` is still ours under ``token`` and renewed within ``lease_s - margin_s``.

        Cheap (no database): a camera's pipeline asks it before each frame, so it stops
        by itself when the heartbeats stop getting through, whatever the heartbeat
        thread is stuck on.
        """
        with self._lock:
            lease = self._held.get(camera)
        return lease is not None and lease.token == token and time.monotonic() - lease.renewed_at < self.lease_s - margin_s

    def forget(self, names: Sequence[str]) -> None:
        """Stop believing this worker holds ``names`` (after stopping them)."""
        with self._lock:
            for name in names:
                self._held.pop(name, None)

    def release(self, names: Sequence[str], *, state: str = LeaseState.RELEASED) -> tuple[str, ...]:
        """Give cameras back at once (only rows still ours under the same token); returns those released."""
        held = self.held
        mine = [(n, held[n].token) for n in names if n in held]
        released: list[str] = []
        if mine:
            with self._db() as conn:
                for name, token in mine:
                    row = conn.execute(
                        "UPDATE facesense_camera_leases SET owner = NULL, expires_at = NULL, state = %s, "
                        "updated_at = now() WHERE name = %s AND owner = %s AND token = %s RETURNING name",
                        (state, name, self.worker_id, token),
                    ).fetchone()
                    if row is not None:
                        released.append(name)
        self.forget([n for n, _ in mine])
        for name in released:
            logger.info("released camera %s", name)
        return tuple(released)

    def release_all(self) -> tuple[str, ...]:
        """Release every lease and remove this worker's row (a clean shutdown)."""
        released = self.release(list(self.held))
        with self._db() as conn:
            conn.execute("DELETE FROM facesense_workers WHERE id = %s", (self.worker_id,))
        return released


def camera_leases(url: str) -> list[CameraLease]:
    """Every camera of the lease table, by name (empty when there is no table yet).

    Raises:
        GalleryError: the database cannot be reached.
    """
    display = display_postgres_url(url)
    try:
        with psycopg.connect(_conninfo(url), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass('facesense_camera_leases') IS NOT NULL").fetchone()
            if row is None or not row[0]:
                return []
            rows = conn.execute(
                "SELECT name, url, owner, token, expires_at > now(), expires_at, heartbeat_at, claimed_at, "
                "host, pid, state, stats FROM facesense_camera_leases ORDER BY name"
            ).fetchall()
    except psycopg.Error as exc:
        password = urlsplit(url).password or ""
        text = first_line(exc)
        raise GalleryError(f"{display}: cannot read the camera leases ({text.replace(password, '***') if password else text})") from exc
    return [
        CameraLease(
            name=str(r[0]), url=redact_url(str(r[1])), owner=r[2], token=int(r[3]), live=bool(r[4]),
            expires_at=r[5], heartbeat_at=r[6], claimed_at=r[7], host=r[8], pid=r[9], state=str(r[10]),
            stats=dict(r[11] or {}),
        )
        for r in rows
    ]
