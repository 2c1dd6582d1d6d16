"""The REST API of recurring unknowns, under ``/api/unknowns``.

Clusters of unknown tracks the watched sources recorded (each track that stayed unknown
is one *record*: its mean embedding and a few face crops), and a person's corrections:
name a cluster (enrolls its crops), merge two, ignore one, remove a wrong record. The
token, the errors (``{"error": "..."}``) and the schema's style are those of
:mod:`facesense.web.api`; the work is done by :class:`facesense.web.unknowns.UnknownsService`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facesense.web.api import ERRORS, JPEG, ErrorBody, PersonOut, image_response, person_out, require_auth, state_of

__all__ = ["router"]

router = APIRouter(prefix="/api/unknowns", tags=["unknowns"], dependencies=[Depends(require_auth)])

STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    503: {"model": ErrorBody, "description": "The unknowns store cannot be opened or read (corrupt, locked, unreachable)."},
}


# --- schemas (for the OpenAPI document) -----------------------------------------------


class ClusterOut(BaseModel):
    id: int = Field(description="The cluster's id (stable until it is named, merged away or emptied).")
    records: int = Field(description="Unknown tracks grouped in it.")
    faces: int = Field(description="Embedded faces over all its tracks.")
    first_seen: str = Field(description="When its first track began, ISO 8601 UTC.")
    last_seen: str = Field(description="When its last track ended, ISO 8601 UTC.")
    sources: list[str] = Field(description="The sources (cameras) it was seen on.")
    ignored: bool = Field(description="Ignored (a poster, a TV): later tracks that join it are not reported.")
    recurring: bool = Field(description="Seen on enough tracks to count as a recurring visitor.")
    spread: float = Field(description="RMS distance of its tracks to their mean (0 for one track).")
    crop_urls: list[str] = Field(description="Its best face crops (JPEG), best first.")


class ClustersResponse(BaseModel):
    clusters: list[ClusterOut] = Field(description="Last seen first.")
    total_records: int = Field(description="Records held in all (singletons and ignored ones included).")
    min_size: int = Field(description="Records a cluster needs to be recurring.")


class RecordOut(BaseModel):
    id: int = Field(description="The record's id (one unknown track).")
    faces: int = Field(description="Embedded faces of the track.")
    first_seen: str = Field(description="ISO 8601 UTC.")
    last_seen: str = Field(description="ISO 8601 UTC.")
    source: str = Field(description="The source (camera) it was seen on.")
    track_id: int | None = Field(description="The track's id on that source.")
    crop_urls: list[str] = Field(description="Its face crops (JPEG), best first.")


class ClusterDetail(ClusterOut):
    record_list: list[RecordOut] = Field(description="Its records, oldest first.")


class NameClusterRequest(BaseModel):
    name: str = Field(description="Who this is (a new or an enrolled person).", min_length=1, max_length=200)


class NameClusterResponse(BaseModel):
    cluster: int = Field(description="The cluster that was named (now gone from the unknowns).")
    person: PersonOut
    samples_added: int = Field(description="Face crops that passed the enrollment checks and were enrolled.")


class MergeRequest(BaseModel):
    other: int = Field(description="The cluster merged into this one (it is gone afterwards).")


class IgnoreRequest(BaseModel):
    ignored: bool = Field(description="true: ignore the cluster; false: stop ignoring it.")


class RemoveRecordResponse(BaseModel):
    deleted: int = Field(description="The record taken out.")
    cluster: ClusterOut | None = Field(description="What is left of its cluster, or null when it is now empty.")


# --- routes -----------------------------------------------------------------------------


@router.get("", response_model=ClustersResponse, responses=STORE_ERRORS, summary="Recurring unknown faces, grouped")
def list_clusters(
    request: Request,
    all: bool = Query(False, description="Also faces seen on one track only, and ignored clusters."),
) -> dict[str, Any]:
    """Clusters of unknown tracks the sources recorded, last seen first. An empty list
    while nothing was recorded."""
    clusters, total, min_size = state_of(request).unknowns.clusters(show_all=all)
    return {"clusters": clusters, "total_records": total, "min_size": min_size}


@router.get("/{cluster_id}", response_model=ClusterDetail, responses=STORE_ERRORS, summary="One cluster and its records")
def get_cluster(request: Request, cluster_id: int) -> dict[str, Any]:
    """Each record is one unknown track: when and where it was seen, its faces and crops."""
    return dict(state_of(request).unknowns.cluster(cluster_id))


@router.get(
    "/records/{record_id}/crops/{rank}",
    responses={200: {"content": {JPEG: {}}}, **STORE_ERRORS},
    response_class=Response,
    summary="One face crop of a record (JPEG)",
)
def record_crop(request: Request, record_id: int, rank: int) -> Response:
    return image_response(state_of(request).unknowns.crop(record_id, rank), cache="private, max-age=3600")


@router.post(
    "/{cluster_id}/name",
    response_model=NameClusterResponse,
    responses={
        **STORE_ERRORS,
        409: {"model": ErrorBody, "description": "No crop passed the enrollment checks, or the gallery holds another model's embeddings."},
    },
    summary="Name a cluster (enrolls its face crops)",
)  # fmt: skip
def name_cluster(request: Request, cluster_id: int, body: NameClusterRequest) -> dict[str, Any]:
    """The cluster's face crops go through the checks of `facesense enroll` (one face,
    large and sharp enough) and those that pass become samples of `name` (a new name
    creates the person), in one transaction; then the cluster is forgotten. The live
    sources name the person as soon as the gallery is re-read. When no crop passes,
    nothing changes (409)."""
    outcome = state_of(request).unknowns.name(cluster_id, body.name)
    return {"cluster": outcome.cluster_id, "person": person_out(outcome.person), "samples_added": outcome.added}


@router.post(
    "/{cluster_id}/merge",
    response_model=ClusterOut,
    responses=STORE_ERRORS,
    summary="Merge another cluster into this one (they are one person)",
)
def merge_clusters(request: Request, cluster_id: int, body: MergeRequest) -> dict[str, Any]:
    """`other`'s records join this cluster; `other` is gone. The merged cluster is ignored
    if either was."""
    return dict(state_of(request).unknowns.merge(cluster_id, body.other))


@router.post(
    "/{cluster_id}/ignore",
    response_model=ClusterOut,
    responses=STORE_ERRORS,
    summary="Ignore a cluster (a poster, a TV), or stop ignoring it",
)
def ignore_cluster(request: Request, cluster_id: int, body: IgnoreRequest) -> dict[str, Any]:
    """An ignored cluster is listed only with `all=true`; later tracks that join it are not reported."""
    return dict(state_of(request).unknowns.ignore(cluster_id, body.ignored))


@router.delete(
    "/records/{record_id}",
    response_model=RemoveRecordResponse,
    responses=STORE_ERRORS,
    summary="Take a wrong record out of its cluster (not the same person)",
)
def remove_record(request: Request, record_id: int) -> dict[str, Any]:
    """The record is forgotten; the rest of its cluster stays together."""
    return {"deleted": record_id, "cluster": state_of(request).unknowns.remove(record_id)}
