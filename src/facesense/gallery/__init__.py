"""Galleries: where enrolled people and their face samples are stored.

:class:`GalleryStore` is the interface; :class:`SQLiteGallery` the one-file
implementation (a PostgreSQL + pgvector store can follow behind the same interface).
"""

from facesense.gallery.base import (
    GalleryEmbeddings,
    GalleryStore,
    ImportSummary,
    NewSample,
    Person,
    Sample,
)
from facesense.gallery.sqlite import SQLiteGallery, default_db_path

__all__ = [
    "GalleryEmbeddings",
    "GalleryStore",
    "ImportSummary",
    "NewSample",
    "Person",
    "SQLiteGallery",
    "Sample",
    "default_db_path",
]
