"""Settings of ``facesense serve`` (:class:`ServeConfig`) and the loopback rule."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesense.detect.factory import DEFAULT_DETECTOR
from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.gallery.location import GalleryLocation

__all__ = ["TOKEN_ENV", "ServeConfig", "is_loopback"]

TOKEN_ENV = "FACESENSE_TOKEN"
MIN_TOKEN_CHARS = 8


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    ``localhost`` and addresses in ``127.0.0.0/8`` or ``::1`` are loopback; every
    other name or address (``0.0.0.0`` included) is not.
    """
    text = host.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything the web app needs to know.

    Attributes:
        db: the gallery, a path or URL for :func:`facesense.gallery.open_gallery`
            (``None``: ``$FACESENSE_DB``, else the default gallery file).
        sources: video sources to watch in the background (camera index, file, URL, folder).
        cameras: named cameras (:class:`facesense.multicam.CameraSpec`, from
            ``facesense.toml``'s ``[[cameras]]``), each with its own ``every``, minimum face
            size and detector; watched like ``sources``.
        host: address the server binds to (only recorded here, for the token rule).
        port: TCP port.
        token: the shared secret for the API (bearer) and the pages (login). Required
            when ``host`` is not a loopback address.
        events_db: the events file (``None``: ``<gallery stem>.events.db`` beside the
            gallery file).
        loop: play file and folder sources again and again.
        every: detect faces every ``every`` frames on the sources; track in between.
        min_face_px: smallest face the sources' detector looks for (``None``: the video
            default of :data:`facesense.detect.DEFAULTS`).
        detector: the sources' detector kind (``mtcnn``, ``yunet``).
        threshold: matcher threshold (``None``: the calibrated default).
        max_upload_bytes: largest accepted image upload.
        max_request_bytes: largest request body (several photos at once).
        keep_events: the events store keeps at most this many events.
        keep_days: and drops events older than this.
        unknown_after_frames: an unknown track's best face is stored (and can be
            named) after this many frames, or when it leaves.
        record_unknowns: record the sources' tracks that stay unknown in the gallery's
            unknowns store, grouped into recurring visitors (the Unknowns page), as
            ``facesense watch`` does.
    """

    db: str | os.PathLike[str] | None = None
    sources: tuple[str, ...] = ()
    cameras: tuple[Any, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    events_db: Path | None = None
    loop: bool = False
    every: int = 3
    min_face_px: float | None = None
    detector: str = DEFAULT_DETECTOR.value
    threshold: float | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 50 * 1024 * 1024
    keep_events: int = 10_000
    keep_days: float = 30.0
    unknown_after_frames: int = 30
    record_unknowns: bool = True

    def __post_init__(self) -> None:
        from facesense.choices import parse_choice
        from facesense.detect import DetectorKind

        object.__setattr__(self, "detector", parse_choice(DetectorKind, self.detector, "detector").value)
        if self.token is not None:
            if not self.token or self.token != self.token.strip() or any(c.isspace() for c in self.token):
                raise ConfigError("the token must be non-empty and contain no spaces")
            if len(self.token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"the token must be at least {MIN_TOKEN_CHARS} characters long")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"binding to {self.host} makes the dashboard reachable from other machines;"
                f" set a token with --token or ${TOKEN_ENV} (or bind to 127.0.0.1)"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"every must be a positive integer, got {self.every!r}")
        if self.min_face_px is not None and not (self.min_face_px >= 12 and math.isfinite(self.min_face_px)):
            raise ConfigError(f"min_face_px must be >= 12, got {self.min_face_px}")
        if self.threshold is not None and not self.threshold >= 0:
            raise ConfigError(f"threshold must be >= 0, got {self.threshold}")
        if self.max_upload_bytes < 1 or self.max_request_bytes < self.max_upload_bytes:
            raise ConfigError("max_request_bytes must be >= max_upload_bytes >= 1")
        if self.keep_events < 1:
            raise ConfigError(f"keep_events must be >= 1, got {self.keep_events}")
        if not self.keep_days > 0:
            raise ConfigError(f"keep_days must be > 0, got {self.keep_days}")
        if self.unknown_after_frames < 1:
            raise ConfigError(f"unknown_after_frames must be >= 1, got {self.unknown_after_frames}")
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must be unique, got {names}")
        from facesense.gallery import parse_location

        parse_location(self.db)  # a gallery URL facesense cannot open fails here, before anything starts

    @property
    def gallery(self) -> GalleryLocation:
        """Where the gallery is (parsed from ``db``; nothing is opened).

        Raises:
            ConfigError: ``db`` is a URL facesense does not support.
        """
        from facesense.gallery import parse_location

        return parse_location(self.db)

    @property
    def events_path(self) -> Path | None:
        """The events file given as ``events_db``, or ``None`` for the gallery's default
        (:func:`facesense.gallery.open_event_log`)."""
        if self.events_db is not None:
            return Path(os.path.expanduser(self.events_db))
        return None
