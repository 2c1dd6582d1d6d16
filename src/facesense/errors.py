"""The facesense exception tree.

Every error facesense raises on purpose derives from :class:`FacesenseError`, so a
caller can catch one class. Errors from OpenCV, ONNX Runtime, SQLite and the file
system are translated at the boundary with ``raise ... from exc``::

    FacesenseError
    ├── ConfigError        bad parameter or option value
    ├── ModelError         weights missing, unreadable, failed conversion or inference
    ├── ImageError         a file that is not a readable image (corrupt, empty, too big)
    ├── SourceError        a camera / video / stream / folder that cannot be opened or read
    ├── GalleryError       a gallery database that is missing, foreign, too new or corrupt
    │   ├── ModelMismatchError   embeddings made by another model / preprocessing
    │   └── ReadOnlyGalleryError  a write to a gallery this process may only read
    ├── EnrollmentError    an enrollment that cannot go ahead (unknown person, no usable face)
    ├── NotFoundError      no such person, sample, event or source (by id)
    ├── ConflictError      clashes with what is stored (name taken, face named already)
    └── PayloadTooLargeError   an upload over the size limit

Each class carries an ``exit_code`` the CLI uses; the web server maps the classes to
HTTP statuses (:func:`facesense.web.app.status_for`).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "EnrollmentError",
    "FacesenseError",
    "GalleryError",
    "ImageError",
    "ModelError",
    "ModelMismatchError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ReadOnlyGalleryError",
    "SourceError",
]


class FacesenseError(Exception):
    """Base class of every error facesense raises on purpose."""

    exit_code: int = 1


class ConfigError(FacesenseError, ValueError):
    """A parameter, option or configuration value is invalid."""

    exit_code = 2


class ModelError(FacesenseError):
    """Model weights are missing or unusable, or inference failed."""

    exit_code = 3


class ImageError(FacesenseError):
    """A file or buffer could not be decoded as a usable image."""

    exit_code = 4


class SourceError(FacesenseError):
    """A video source (camera, file, stream, folder) cannot be opened or read."""

    exit_code = 5


class GalleryError(FacesenseError):
    """The gallery store is missing, not a facesense gallery, too new or corrupt."""

    exit_code = 6


class ModelMismatchError(GalleryError):
    """Embeddings in the gallery come from another model or preprocessing."""


class ReadOnlyGalleryError(GalleryError):
    """A write was asked of a gallery that this process can only read."""


class EnrollmentError(FacesenseError):
    """An enrollment request cannot be carried out."""

    exit_code = 7


class NotFoundError(FacesenseError, LookupError):
    """No person, sample, event or source with the id asked for."""

    exit_code = 8


class ConflictError(FacesenseError):
    """The request clashes with what is stored (a name taken, a face already named)."""

    exit_code = 9


class PayloadTooLargeError(FacesenseError):
    """An upload is over the size limit."""

    exit_code = 10
