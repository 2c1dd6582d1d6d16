"""The Live page's "Wrong?" control on a track, in headless Chromium against a real ``facesense serve``.

Before the server starts, the gallery gets ``obama`` enrolled from alex_lacamoire's photo
(someone else's face enrolled as the person shown) and ``biden`` from his. The server
watches a folder with alex's other photo in a loop, so the page shows one track named
obama. The test opens "Wrong?" on that row, checks that the open picker survives the
page's refreshes (every second the table is rebuilt), says "Not obama", and sees the
track's name change. Fixtures (Chromium, the server) as in ``test_corrections_browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import ServeProcess, artifacts_dir, browser_page, served

TOKEN = "live-corrections-browser-token"


@pytest.fixture(scope="module")
def prepared(browser: Any, tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    """The mistaken gallery and the folder source, in the server's working folder."""
    import cv2

    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery

    tmp = tmp_path_factory.mktemp("serve-live-corrections")
    train = examples_dir / "knn_examples" / "train"
    with SQLiteGallery(tmp / "gallery.db") as gallery:
        enroller = Enroller(gallery, analyzer)
        assert enroller.enroll_person("obama", [train / "alex_lacamoire" / "img1.jpg"]).in_gallery == 1
        assert enroller.enroll_person("biden", [train / "biden"]).in_gallery == 2
    (tmp / "source").mkdir()
    image = cv2.imread(str(examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"))
    h, w = image.shape[:2]
    assert cv2.imwrite(str(tmp / "source" / "alex.jpg"), cv2.resize(image, (640, round(h * 640 / w)), interpolation=cv2.INTER_AREA))
    return tmp


@pytest.fixture(scope="module")
def server(prepared: Path) -> Iterator[ServeProcess]:
    with served(prepared, "--source", str(prepared / "source"), "--loop", "--every", "1", token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: ServeProcess) -> Iterator[Any]:
    with browser_page(browser, server.url + "/live", token=TOKEN) as pg:
        yield pg


@pytest.fixture(scope="module")
def shots() -> Path:
    return artifacts_dir()


def test_not_x_on_a_live_track_changes_its_name(page: Any, server: ServeProcess, shots: Path) -> None:
    card = page.locator('.source[data-source-id="0"]')
    row = card.locator("tr[data-track-id]").filter(has=page.locator(".correct-track"))
    row.wait_for(timeout=60_000)  # the track, named obama (its name can be corrected)
    assert row.locator(".track-name").inner_text() == "obama"
    track_id = int(row.get_attribute("data-track-id") or "0")
    event_id = int(row.locator(".correct-track").get_attribute("data-event-id") or "0")
    assert server.api(f"/api/events/{event_id}")["name"] == "obama"

    row.locator(".correct-track summary").click()
    picker = row.locator('.correct-track select[name="is"] option')
    page.wait_for_function(
        "() => [...document.querySelectorAll('.correct-track select[name=is] option')].some((o) => o.value === 'biden')"
    )
    choices = picker.all_inner_texts()
    assert "biden" in choices and "obama" not in choices  # enrolled people, not the wrong name
    row.locator('.correct-track select[name="is"]').select_option("biden")
    # The table is rebuilt every second: the open picker (and its choice) survives it.
    page.evaluate("document.querySelector('.correct-track[open]').closest('tr').dataset.marker = 'kept'")
    page.wait_for_timeout(2500)
    assert row.locator(".correct-track").evaluate("(d) => d.open && d.closest('tr').dataset.marker === 'kept'")
    assert row.locator('.correct-track select[name="is"]').input_value() == "biden"
    page.screenshot(path=str(shots / "live-wrong-picker.png"), full_page=True)

    button = row.locator('.correct-track button[data-action="not"]')
    assert button.inner_text() == "Not obama"
    button.click()
    results = card.locator('[data-field="results"]')
    results.locator("p.ok").wait_for()
    assert results.inner_text().startswith(f"Track #{track_id}: not obama (event {event_id})")
    same = card.locator(f'tr[data-track-id="{track_id}"] .track-name')
    page.wait_for_function(  # within a couple of refreshes: no longer obama, identified again (unknown)
        "(id) => { const n = document.querySelector(`tr[data-track-id='${id}'] .track-name`); return n && n.textContent === 'unknown'; }",
        arg=track_id, timeout=10_000,
    )  # fmt: skip
    assert same.inner_text() == "unknown"
    assert card.locator(f'tr[data-track-id="{track_id}"] .correct-track').count() == 0
    page.screenshot(path=str(shots / "live-corrected.png"), full_page=True)
    obama = next(p["id"] for p in server.api("/api/people")["people"] if p["name"] == "obama")
    (negative,) = server.api(f"/api/people/{obama}/negatives")["negatives"]
    assert negative["source"] == f"event {event_id}"
    assert server.api(f"/api/events/{event_id}")["correction"] == "not obama"
