"""The dashboard in headless Chromium, driven by Playwright, against a real ``facesense serve``.

The test starts ``facesense serve`` itself (a tmp gallery, the Hamilton clip on a
loop, a token, a free 127.0.0.1 port), logs in, enrolls a person by uploading a
photo, watches the live stream and names an unknown face on the events page.
Screenshots of each page go to ``artifacts/web/`` (git-ignored;
``$FACESENSE_ARTIFACTS`` overrides).

Chromium is Debian's (``apt-get install chromium``), never a Playwright download;
the tests skip when it or the ``playwright`` package is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import ServeProcess, artifacts_dir, browser_page, served

REPO = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def shots() -> Path:
    return artifacts_dir()


@pytest.fixture(scope="module")
def server(browser: Any, tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("serve")
    clip = str(examples_dir / "short_hamilton_clip.mp4")
    with served(tmp, "--source", clip, "--loop", token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Script errors and failed loads the pages logged (checked when the module ends)."""
    return []


@pytest.fixture(scope="module")
def page(browser: Any, server: ServeProcess, page_errors: list[str]) -> Iterator[Any]:
    with browser_page(browser, errors=page_errors) as pg:
        yield pg


def test_login_then_enroll_by_upload(page: Any, server: ServeProcess, examples_dir: Path, shots: Path, page_errors: list[str]) -> None:
    page.goto(server.url + "/people")
    assert "/login" in page.url  # a token is set: pages need a login first
    page.fill("input[name=token]", "wrong-token!")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Wrong token.")
    assert page_errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    page_errors.clear()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/people")
    assert page.locator("#no-people").is_visible()

    page.fill("#add-person input[name=name]", "Barack Obama")
    page.set_input_files("#add-person input[type=file]", [str(examples_dir / "obama.jpg"), str(examples_dir / "two_people.jpg")])
    page.click("#add-person button[type=submit]")
    page.wait_for_selector('#add-result [data-outcome="added"]')
    assert page.locator('#add-result [data-outcome="several_faces"]').inner_text().startswith("several faces")
    card = page.locator('.person[data-person-name="Barack Obama"]')
    card.wait_for()
    thumb = card.locator("img.thumb")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert "1 sample" in card.inner_text()
    card.locator('button[data-action="samples"]').click()
    assert card.locator(".samples li").count() == 1
    page.screenshot(path=str(shots / "people.png"), full_page=True)
    assert [p["name"] for p in server.api("/api/people")["people"]] == ["Barack Obama"]


def test_live_stream_shows_frames(page: Any, server: ServeProcess, shots: Path) -> None:
    page.goto(server.url + "/live")
    stream = page.locator("img[data-stream]")
    page.wait_for_function("img => img.naturalWidth > 0", arg=stream.element_handle(), timeout=60_000)
    assert page.evaluate("img => [img.naturalWidth, img.naturalHeight]", stream.element_handle()) == [640, 360]
    status = page.locator('[data-field="status"]')
    page.wait_for_function("el => el.textContent.trim() === 'live'", arg=status.element_handle())
    page.wait_for_function("el => parseFloat(el.textContent) > 0", arg=page.locator('[data-field="fps"]').element_handle())
    page.screenshot(path=str(shots / "live.png"), full_page=True)


def test_name_an_unknown_face(page: Any, server: ServeProcess, shots: Path) -> None:
    deadline = time.monotonic() + 60
    while server.api("/api/events?type=unknown&per_page=1")["total"] == 0:
        assert time.monotonic() < deadline, "no unknown face was stored within 60 s"
        time.sleep(0.5)
    page.goto(server.url + "/events?type=unknown")
    form = page.locator("form.name-face").first
    form.wait_for()
    event_id = int(form.get_attribute("data-event-id"))
    card = page.locator(f'.event[data-event-id="{event_id}"]')
    crop = card.locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle())
    form.locator("input[name=name]").fill("Hamilton guest")
    form.locator("button[type=submit]").click()
    card.locator("text=Enrolled as Hamilton guest").wait_for()
    page.screenshot(path=str(shots / "events.png"), full_page=True)
    people = {p["name"]: p for p in server.api("/api/people")["people"]}
    assert people["Hamilton guest"]["samples"] == 1
    assert server.api(f"/api/events/{event_id}")["name"] == "Hamilton guest"
    # The People page shows the new person, with the face as thumbnail.
    page.goto(server.url + "/people")
    guest = page.locator('.person[data-person-name="Hamilton guest"] img.thumb')
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=guest.element_handle())


def test_rename_and_delete_with_confirmation(page: Any, server: ServeProcess, shots: Path) -> None:
    page.goto(server.url + "/people")
    card = page.locator('.person[data-person-name="Hamilton guest"]')
    card.locator('button[data-action="rename"]').click()
    card.locator("form.rename input[name=name]").fill("Guest")
    card.locator("form.rename button[type=submit]").click()
    renamed = page.locator('.person[data-person-name="Guest"]')
    renamed.wait_for()
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Cancel" keeps him
    renamed.locator('button[data-action="delete"]').click()
    assert renamed.count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    renamed.locator('button[data-action="delete"]').click()
    renamed.wait_for(state="detached")
    assert [p["name"] for p in server.api("/api/people")["people"]] == ["Barack Obama"]
    page.goto(server.url + "/api-docs")
    page.get_by_text("/api/recognize", exact=True).wait_for()
    page.screenshot(path=str(shots / "api.png"), full_page=True)


def test_the_api_schema_needs_the_token(browser: Any, page: Any, server: ServeProcess) -> None:
    """``/api/openapi.json`` sits behind the same check as the ``/api-docs`` page."""
    anonymous = server.request("/api/openapi.json", auth=False)
    assert anonymous.status == 401 and "token" in anonymous.json()["error"]
    assert server.request("/api/openapi.json", headers={"Authorization": "Bearer wrong-token-123"}).status == 401
    schema = server.api("/api/openapi.json")  # the bearer token
    assert "/api/recognize" in schema["paths"] and "/api/openapi.json" not in schema["paths"]
    logged_in = page.request.get(server.url + "/api/openapi.json")  # the session cookie
    assert logged_in.status == 200 and logged_in.json()["info"]["title"] == "facesense"
    context = browser.new_context()
    try:
        stranger = context.new_page()
        response = stranger.goto(server.url + "/api/openapi.json")
        assert response.status == 401
        docs = stranger.goto(server.url + "/api-docs")
        assert "/login" in stranger.url and docs.status == 200
    finally:
        context.close()
