"""The web dashboard and REST API behind ``facesense serve``.

* :func:`facesense.web.app.create_app` builds the FastAPI app from a
  :class:`~facesense.web.config.ServeConfig`;
* :mod:`facesense.web.api`: the REST API under ``/api``;
* :mod:`facesense.web.pages`: the Live, People and Events pages;
* the work behind them, without HTTP, one module per job:
  :mod:`~facesense.web.models` (the shared detector and embedder),
  :mod:`~facesense.web.people` (people, samples, upload enrollment),
  :mod:`~facesense.web.recognition` (detect and recognise one image),
  :mod:`~facesense.web.naming` (naming an unknown face enrolls it),
  :mod:`~facesense.web.thumbnails` (face crops and thumbnails);
* :mod:`facesense.web.live`: the watched sources, one thread each;
* :mod:`facesense.gallery.events`: the events log (an interface; SQLite beside the gallery);
* :mod:`facesense.web.security`: token, session cookie, body limit, origins, headers.

The gallery is reached only through :func:`facesense.gallery.open_gallery` and the
:class:`~facesense.gallery.base.GalleryStore` interface, and faces are named by a
:class:`facesense.recognize.LiveMatcher`, which refits when the gallery's revision
changes (whoever changed it).

Importing this package
is cheap; FastAPI is imported by the modules that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facesense.web.app import create_app
    from facesense.web.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from facesense.web.app import create_app

        return create_app
    if name == "ServeConfig":
        from facesense.web.config import ServeConfig

        return ServeConfig
    raise AttributeError(f"module 'facesense.web' has no attribute {name!r}")
