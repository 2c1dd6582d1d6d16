"""The web app's small pure rules: loopback, redirects, file names, URLs, tokens, body limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from facesense.web.config import ServeConfig, is_loopback
from facesense.web.live import public_source
from facesense.web.people import clean_filename
from facesense.web.security import check_token, is_same_origin, safe_next, session_value

from .conftest import MakeClient


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/people", "/people"),
        ("/events?type=unknown", "/events?type=unknown"),
        (None, "/"),
        ("", "/"),
        ("people", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/a\nSet-Cookie: x", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\face.png", "face.png"),
        ("bad\x00\x1bname.jpg", "badname.jpg"),
        ("", "upload"),
        (None, "upload"),
        ("x" * 300, "x" * 119 + "…"),
    ],
)
def test_clean_filename(name: str | None, expected: str) -> None:
    assert clean_filename(name) == expected


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("clip.mp4", "clip.mp4"),
        ("camera:0", "camera:0"),
        ("rtsp://cam.local:554/stream", "rtsp://cam.local:554/stream"),
        ("rtsp://admin:hunter2@cam.local:554/stream", "rtsp://cam.local:554/stream"),
        ("http://user@[::1]:8080/video?x=1", "http://[::1]:8080/video?x=1"),
    ],
)
def test_public_source_hides_credentials(source: str, shown: str) -> None:
    assert public_source(source) == shown


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "http", True),
        ("HTTP://LocalHost:8000", "localhost:8000", "http", True),
        ("http://127.0.0.1", "127.0.0.1:80", "http", True),
        ("http://127.0.0.1:80", "127.0.0.1", "http", True),
        ("https://faces.example", "faces.example", "https", True),  # behind a TLS proxy that says so
        ("https://faces.example", "faces.example:443", "http", True),
        ("http://[::1]:8000", "[::1]:8000", "http", True),
        ("null", "127.0.0.1:8000", "http", False),
        ("", "127.0.0.1:8000", "http", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", "http", False),  # another port
        ("https://127.0.0.1", "127.0.0.1", "http", False),  # 443 is another port than 80
        ("http://localhost:8000", "127.0.0.1:8000", "http", False),
        ("http://127.0.0.1:8000/path", "127.0.0.1:8000", "http", False),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000", "http", False),
        ("http://127.0.0.1:99999", "127.0.0.1:99999", "http", False),
        ("file://", "127.0.0.1:8000", "http", False),
        ("chrome-extension://abc", "abc", "http", False),
        ("http://evil.example", "evil.example.127.0.0.1.nip.io", "http", False),
    ],
)
def test_is_same_origin(origin: str, host: str, scheme: str, same: bool) -> None:
    assert is_same_origin(origin, host, scheme) is same


def test_tokens() -> None:
    assert check_token("abcdefgh1", "abcdefgh1")
    assert not check_token("abcdefgh2", "abcdefgh1")
    assert not check_token(None, "abcdefgh1")
    assert session_value("abcdefgh1") != session_value("abcdefgh2")
    from facesense.errors import ConfigError

    for bad in ("", "short", "has space in it"):
        with pytest.raises(ConfigError):
            ServeConfig(token=bad)


def test_chunked_body_over_the_limit_is_refused(make_client: MakeClient) -> None:
    client = make_client(max_upload_bytes=10_000, max_request_bytes=100_000)

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 10_000

    response = client.post(
        "/api/recognize",
        content=chunks(),  # no Content-Length: sent chunked
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 413 and "limit" in response.json()["error"]
