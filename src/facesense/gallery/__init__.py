"""Galleries: where enrolled people and their face samples are stored.

:class:`GalleryStore` is the interface; :class:`SQLiteGallery` the one-file
implementation (a PostgreSQL + pgvector store can follow behind the same interface).
Open one with :func:`open_gallery` (a path or ``sqlite:///...``). The events a
gallery's watchers saw go to an events log (:mod:`facesense.gallery.events`, opened
with :func:`open_event_log`).
"""

from facesense.gallery.base import (
    GalleryEmbeddings,
    GalleryStore,
    ImportSummary,
    NewSample,
    Person,
    Sample,
    SearchResult,
)
from facesense.gallery.location import GalleryLocation, open_event_log, open_gallery, parse_location
from facesense.gallery.sqlite import SQLiteGallery, default_db_path

__all__ = [
    "GalleryEmbeddings",
    "GalleryLocation",
    "GalleryStore",
    "ImportSummary",
    "NewSample",
    "Person",
    "SQLiteGallery",
    "Sample",
    "SearchResult",
    "default_db_path",
    "open_event_log",
    "open_gallery",
    "parse_location",
]
