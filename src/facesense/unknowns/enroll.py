"""Enrolling a named cluster of unknowns: :func:`enroll_named`.

:meth:`facesense.gallery.unknowns.StoredUnknowns.name` takes a cluster out as a
:class:`~facesense.unknowns.NamedCluster`; this puts its face crops through the checks
of ``facesense enroll`` (:class:`facesense.enroll.Enroller`: one face, large and sharp
enough, not a duplicate) and writes the samples that pass in one transaction. The
``facesense unknowns name`` command and the web server's Unknowns page both use it,
each with the analyzer it already has.

Not re-exported from :mod:`facesense.unknowns`: that package touches no store and no
model, and the gallery imports it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from facesense.errors import EnrollmentError, ModelMismatchError

if TYPE_CHECKING:
    from facesense.enroll import FaceAnalyzerLike
    from facesense.gallery.base import GalleryStore
    from facesense.unknowns.cluster import NamedCluster

logger = logging.getLogger(__name__)

__all__ = ["enroll_named"]


def enroll_named(gallery: GalleryStore, analyzer: FaceAnalyzerLike, named: NamedCluster) -> int:
    """Enroll the crops of a named cluster as ``named.name``, in one transaction; how many samples were added.

    Each crop is decoded, detected and embedded again by ``analyzer`` (the record's mean
    embedding is not a face a gallery can show or re-embed, and the crops need no
    particular model); the person is created when new.

    Args:
        gallery: where the samples go (open for writing).
        analyzer: detects and embeds the crops (already built: the CLI's, the server's).
        named: what :meth:`~facesense.gallery.unknowns.StoredUnknowns.name` handed over.

    Raises:
        EnrollmentError: no crop passed the enrollment checks (nothing written).
        ImageError: the only crop is not a readable image (nothing written).
        ModelMismatchError: the gallery holds another model's embeddings.
    """
    from facesense.enroll import Enroller, EnrollSummary, Skipped
    from facesense.gallery.base import NewSample

    if gallery.model_id is not None and gallery.model_id != analyzer.model_id:
        raise ModelMismatchError(
            f"{gallery.location}: the gallery holds embeddings from model {gallery.model_id!r}, not "
            f"{analyzer.model_id!r}; run `facesense reembed --db {gallery.location}` first"
        )
    enroller = Enroller(gallery, analyzer)
    samples: list[NewSample] = []
    skipped: list[Skipped] = []
    seen: set[tuple[str, str]] = set()
    for k, crop in enumerate(named.crops):
        item = enroller.prepare_bytes(named.name, crop.jpeg, name=f"cluster {named.cluster_id} crop {k}", seen=seen)
        if isinstance(item, Skipped):
            skipped.append(item)
            logger.info("crop %d: %s", k, item.detail)
        else:
            samples.append(item)
    if not samples:
        failure = EnrollSummary(skipped=tuple(skipped)).failure()
        if failure is not None:
            raise failure
        if skipped:  # every crop is a duplicate: failure() counts those as enrolled
            raise EnrollmentError(f"{named.name} already has every face crop of cluster {named.cluster_id}; nothing was enrolled")
        raise EnrollmentError(f"cluster {named.cluster_id} has no face crop; nothing was enrolled")
    gallery.add_samples(named.name, samples, create=True)
    return len(samples)
