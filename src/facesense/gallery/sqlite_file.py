"""The connection side of facesense's SQLite side files (events log, unknowns): :class:`SideFile`.

A side file sits beside the gallery file: one connection in autocommit mode shared by
threads under a lock, its schema checked or created by the subclass's ``_open``, and
SQLite's errors turned into one-line :class:`~facesense.errors.GalleryError` messages.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from facesense.errors import GalleryError

__all__ = ["BUSY_TIMEOUT_S", "SideFile"]

BUSY_TIMEOUT_S = 10.0


class SideFile:
    """A side file's connection, errors and lifecycle.

    Subclasses set ``kind`` (``"events"``, ``"unknowns"``: the messages' word), define
    ``_open`` (check or create the schema on ``self._conn``) and call :meth:`_connect`
    from ``__init__``.
    """

    kind = "side"

    def _open(self) -> None:
        raise NotImplementedError

    def _connect(self, path: str | os.PathLike[str]) -> None:
        """Open (creating it and its folder when missing) and check the file.

        Raises:
            GalleryError: a directory, a file that cannot be opened, or ``_open`` refused it.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._closed = False
        if self.path.is_dir():
            raise GalleryError(f"{self.path}: is a directory, not an {self.kind} file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise GalleryError(f"{self.path}: cannot open the {self.kind} file ({exc})") from exc
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: {self.kind} database error ({exc})") from exc

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
