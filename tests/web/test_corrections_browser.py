"""The events page's "Wrong?" control in headless Chromium, against a real ``facesense serve``.

Before the server starts, the gallery is enrolled from knn_examples/train and the events
file gets two ``recognized`` events (crop and embedding, as the server stores them) of the
face of ``knn_examples/test/alex_lacamoire1.jpg`` wrongly named ``obama``. The test logs in,
clicks "Not obama" on one and "This is alex_lacamoire" on the other, and checks what the
gallery stored and what the page shows. Fixtures (Chromium, the server) as in ``test_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facesense.gallery.events import EventRecord
from facesense.types import Event, EventType

from .serving import ServeProcess, artifacts_dir, browser_page, served

TOKEN = "corrections-browser-token"


def _prepare(tmp: Path, examples_dir: Path, analyzer: Any) -> list[int]:
    """The gallery and two events of alex's face recognised as obama; returns their ids."""
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.gallery.sqlite_events import SQLiteEventStore
    from facesense.imageio import load_image
    from facesense.web.thumbnails import face_crop_jpeg

    with SQLiteGallery(tmp / "gallery.db") as gallery:
        Enroller(gallery, analyzer).enroll_folder(examples_dir / "knn_examples" / "train")
    image = load_image(examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg")
    faces = analyzer.analyze(image)
    x1, y1, x2, y2 = (float(v) for v in faces.xyxy[0])
    ids = []
    with SQLiteEventStore(tmp / "gallery.events.db") as events:
        for track in (1, 2):
            event = Event(type=EventType.RECOGNIZED, time=float(track), frame=track, source="door", track_id=track,
                          name="obama", confidence=0.51, xyxy=(x1, y1, x2, y2))  # fmt: skip
            ids.append(events.add(EventRecord(
                event=event, seen_at=time.time() - 10 + track, crop_jpeg=face_crop_jpeg(image, faces.xyxy[0]),
                embedding=faces.embeddings[0], model_id=analyzer.model_id,
            )))  # fmt: skip
    return ids


@pytest.fixture(scope="module")
def prepared(browser: Any, tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> tuple[Path, list[int]]:
    tmp = tmp_path_factory.mktemp("serve-corrections")
    return tmp, _prepare(tmp, examples_dir, analyzer)


@pytest.fixture(scope="module")
def server(prepared: tuple[Path, list[int]]) -> Iterator[ServeProcess]:
    with served(prepared[0], token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: ServeProcess) -> Iterator[Any]:
    with browser_page(browser, server.url + "/events", token=TOKEN) as pg:
        yield pg


def _obama_id(server: ServeProcess) -> int:
    return next(p["id"] for p in server.api("/api/people")["people"] if p["name"] == "obama")


def test_not_x_from_the_events_page(page: Any, server: ServeProcess, prepared: tuple[Path, list[int]]) -> None:
    event_id = prepared[1][0]
    page.goto(server.url + "/events")
    card = page.locator(f'.event[data-event-id="{event_id}"]')
    card.locator(".correct-face summary").click()
    button = card.locator('.correct-face button[data-action="not"]')
    assert button.inner_text() == "Not obama"
    button.click()
    card.locator(".correction").wait_for()
    assert card.locator(".correction").inner_text() == "Corrected: not obama"
    assert card.locator(".correct-face").count() == 0
    # Stored: a negative of obama from this event, and the event says so (also after a reload).
    (negative,) = server.api(f"/api/people/{_obama_id(server)}/negatives")["negatives"]
    assert negative["source"] == f"event {event_id}"
    assert server.api(f"/api/events/{event_id}")["correction"] == "not obama"
    page.reload()
    assert page.locator(f'.event[data-event-id="{event_id}"] .correction').inner_text() == "Corrected: not obama"


def test_this_is_y_from_the_events_page(page: Any, server: ServeProcess, prepared: tuple[Path, list[int]], shots: Path) -> None:
    event_id = prepared[1][1]
    page.goto(server.url + "/events")
    card = page.locator(f'.event[data-event-id="{event_id}"]')
    card.locator(".correct-face summary").click()
    choices = card.locator("form.is-person select option").all_inner_texts()
    assert "alex_lacamoire" in choices and "obama" not in choices  # enrolled people, not the wrong name
    card.locator("form.is-person select").select_option("alex_lacamoire")
    card.locator("form.is-person button[type=submit]").click()
    card.locator(".correction").wait_for(timeout=60_000)
    assert card.locator(".correction").inner_text() == "Corrected: is alex_lacamoire"
    page.screenshot(path=str(shots / "events-corrected.png"), full_page=True)
    alex = next(p for p in server.api("/api/people")["people"] if p["name"] == "alex_lacamoire")
    assert alex["samples"] == 2
    assert server.api(f"/api/events/{event_id}")["correction"] == "is alex_lacamoire"


@pytest.fixture(scope="module")
def shots() -> Path:
    return artifacts_dir()
