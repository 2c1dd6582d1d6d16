"""LISTEN for PostgreSQL notifications on a connection of its own, reconnecting.

:class:`ChangeListener` runs one daemon thread that holds one autocommit connection
``LISTEN``-ing on a channel, and calls a callback with each payload as the database
delivers it (``NOTIFY`` is sent at commit, so the callback sees committed changes
only). When the connection breaks (the server restarts, the network drops) the thread
reconnects with a doubling wait up to :data:`RECONNECT_MAX_S`, and after it is back it
calls the callback once with ``None``: notifications sent while it was away are lost,
so the caller should look for itself. :attr:`ChangeListener.connected` says whether
notifications are flowing, so that a caller can fall back to polling while they are not.

Every :data:`PING_S` seconds without a notification the thread runs ``SELECT 1``, so
a connection that died silently is noticed within that time too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from facesense.errors import ConfigError
from facesense.gallery.pg_pool import first_line

logger = logging.getLogger(__name__)

__all__ = ["PING_S", "RECONNECT_INITIAL_S", "RECONNECT_MAX_S", "ChangeListener"]

WAIT_S = 0.25  # the longest the thread waits for notifications before looking at its stop flag
PING_S = 5.0
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5


class ChangeListener:
    """Calls ``callback(payload)`` for every ``NOTIFY channel`` (``callback(None)`` after a reconnection).

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URL.
        channel: the channel to LISTEN on (an identifier).
        callback: called on the listener's thread; exceptions are logged, not raised.
        display: how to name the database in logs (no password).

    The thread starts at once and connects in the background; :meth:`wait_connected`
    waits for the first connection. :meth:`close` stops it (within :data:`WAIT_S`).
    """

    def __init__(
        self,
        conninfo: str,
        channel: str,
        callback: Callable[[str | None], None],
        *,
        display: str = "the database",
        name: str = "facesense-listen",
    ) -> None:
        if not channel:
            raise ConfigError("a LISTEN channel name is needed")
        self._conninfo = conninfo
        self.channel = channel
        self._callback = callback
        self._display = display
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up (notifications are being received)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until the connection is up; ``False`` after ``timeout_s`` without it."""
        return self._connected.wait(timeout_s)

    def close(self) -> None:
        """Stop the thread and close its connection (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * WAIT_S + CONNECT_TIMEOUT_S)

    def _call(self, payload: str | None) -> None:
        try:
            self._callback(payload)
        except Exception as exc:  # noqa: BLE001 - a bad callback must not kill the listener
            logger.error("change callback failed for %s: %s", self._display, exc)

    def _run(self) -> None:
        wait = RECONNECT_INITIAL_S
        first = True
        while not self._stop.is_set():
            try:
                conn: psycopg.Connection[Any] = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                    application_name="facesense-listen",
                )
            except psycopg.Error as exc:
                logger.warning("cannot LISTEN on %s (retrying in %.1f s): %s", self._display, wait, first_line(exc))
                self._stop.wait(wait)
                wait = min(RECONNECT_MAX_S, wait * 2)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self._connected.set()
                wait = RECONNECT_INITIAL_S
                if not first:
                    self.reconnects += 1
                    logger.info("listening on %s again", self._display)
                    self._call(None)  # what was sent while we were away is lost: look now
                first = False
                self._listen(conn)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    logger.warning("lost the LISTEN connection to %s: %s", self._display, first_line(exc))
            finally:
                self._connected.clear()
                try:
                    conn.close()
                except psycopg.Error:
                    logger.debug("closing a broken LISTEN connection", exc_info=True)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        quiet_since = time.monotonic()
        while not self._stop.is_set():
            got = False
            for notify in conn.notifies(timeout=WAIT_S):
                got = True
                self._call(notify.payload)
            now = time.monotonic()
            if got:
                quiet_since = now
            elif now - quiet_since >= PING_S:
                conn.execute("SELECT 1")  # a connection that died silently raises here
                quiet_since = now
