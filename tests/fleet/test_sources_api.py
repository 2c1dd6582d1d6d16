"""``GET /api/sources`` on a server with a PostgreSQL gallery lists every camera of the
fleet's lease table: its state, the worker running it and the figures it reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesense.fleet.leases import LeaseTable


@pytest.fixture
def client_for(tmp_path: Path):
    from fastapi.testclient import TestClient

    from facesense.analyzer import FaceAnalyzer
    from facesense.web.app import create_app
    from facesense.web.config import ServeConfig
    from facesense.web.models import WebModels

    clients: list[TestClient] = []

    def make(db: str | Path) -> TestClient:
        app = create_app(ServeConfig(db=db), models=WebModels(analyzer=FaceAnalyzer()), start_sources=False)
        client = TestClient(app, base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_sources_lists_the_fleet_cameras(pg_url: str, client_for) -> None:
    client = client_for(pg_url)
    assert client.get("/api/sources").json() == {"sources": [], "fleet": []}  # no lease table yet
    a = LeaseTable(pg_url, worker_id="A", lease_s=30)
    try:
        a.register({"door": "rtsp://u:secret@cam/door", "hall": "rtsp://cam/hall"})
        (lease,) = a.claim(limit=1)
        a.heartbeat({lease.camera: {"fps": 14.5, "lag_ms": 40.2, "dropped": 3, "token": lease.token}})
        body = client.get("/api/sources").json()
        fleet = {c["name"]: c for c in body["fleet"]}
        assert set(fleet) == {"door", "hall"}
        door = fleet["door"]
        assert (door["owner"], door["state"], door["live"], door["token"]) == ("A", "running", True, 1)
        assert door["worker"] == {"id": "A", "host": a.host, "pid": a.pid}
        assert door["stats"] == {"fps": 14.5, "lag_ms": 40.2, "dropped": 3, "token": 1}
        assert door["url"] == "rtsp://u:***@cam/door" and "secret" not in str(body)
        assert door["heartbeat_at"] is not None and door["expires_at"] > door["heartbeat_at"]
        hall = fleet["hall"]
        assert (hall["owner"], hall["state"], hall["worker"], hall["token"]) == (None, "free", None, 0)
        a.release_all()
        door = {c["name"]: c for c in client.get("/api/sources").json()["fleet"]}["door"]
        assert (door["owner"], door["state"], door["worker"]) == (None, "released", None)
    finally:
        a.close()


def test_sqlite_gallery_has_no_fleet(tmp_path: Path, client_for) -> None:
    assert client_for(tmp_path / "g.db").get("/api/sources").json() == {"sources": [], "fleet": []}
