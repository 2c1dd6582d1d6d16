"""The Unknowns page in headless Chromium, against a real ``facesense serve`` watching the Hamilton clip.

Before the server starts, the gallery knows only obama (knn_examples/train/obama), and
the unknowns store already holds tracks recorded an hour earlier from photos of
knn_examples (kit_harington, rose_leslie, biden, alex_lacamoire: one cluster each, built
as in ``test_unknowns_api.py``). The server watches the clip once (``--source``, no
loop). The tests merge, ignore and split the photo clusters from the page. A second
server (same gallery, no unknowns yet) plays the clip in a loop and records the tracks
that stay unknown; its clip's biggest unknown is named from the page, and the next
recognition of a frame of the clip names that person. Fixtures (Chromium, the
server) as in ``test_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import ServeProcess, artifacts_dir, browser_page, served
from .test_unknowns_api import _record

TOKEN = "unknowns-browser-token"
SEEDED = {"kit_harington": ("train/kit_harington/john1.jpeg", "train/kit_harington/john2.jpeg", "test/johnsnow_test1.jpg"),
          "rose_leslie": ("train/rose_leslie/img1.jpg", "train/rose_leslie/img2.jpg"),
          "biden": ("train/biden/biden.jpg", "train/biden/biden2.jpg"),
          "alex_lacamoire": ("train/alex_lacamoire/img1.jpg", "test/alex_lacamoire1.jpg")}  # fmt: skip
CLIP_LENGTH = 275  # frames in the Hamilton clip
CLIP_FRAMES = (30, 60, 90, 120, 150, 180, 210, 240)  # frames of the clip recognised after naming


@pytest.fixture(scope="module")
def prepared(browser: Any, tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> tuple[Path, dict[str, int]]:
    """The gallery (obama) and the seeded store; which cluster is whom."""
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore
    from facesense.gallery.unknowns import StoredUnknowns

    tmp = tmp_path_factory.mktemp("serve-unknowns")
    knn = examples_dir / "knn_examples"
    with SQLiteGallery(tmp / "gallery.db") as gallery:
        Enroller(gallery, analyzer).enroll_person("obama", sorted((knn / "train" / "obama").iterdir()))
    who: dict[str, int] = {}
    earlier = time.time() - 3600
    with SQLiteUnknownStore(tmp / "gallery.unknowns.db") as store:
        book = StoredUnknowns(store, analyzer.model_id)
        k = 0
        for person, photos in SEEDED.items():
            for photo in photos:
                k += 1
                record = _record(analyzer, knn / photo, source="door", track=k, seen_at=earlier + 60 * k)
                who[person] = book.add(record).cluster_id
    assert len(set(who.values())) == len(SEEDED)
    return tmp, who


@pytest.fixture(scope="module")
def server(prepared: tuple[Path, dict[str, int]], examples_dir: Path) -> Iterator[ServeProcess]:
    clip = str(examples_dir / "short_hamilton_clip.mp4")
    with served(prepared[0], "--source", clip, token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Script errors and failed loads the page logged (checked when the module ends)."""
    return []


@pytest.fixture(scope="module")
def page(browser: Any, server: ServeProcess, page_errors: list[str]) -> Iterator[Any]:
    with browser_page(browser, server.url + "/unknowns", token=TOKEN, errors=page_errors) as pg:
        yield pg


@pytest.fixture(scope="module")
def shots() -> Path:
    return artifacts_dir()


def _card(page: Any, cluster_id: int) -> Any:
    return page.locator(f'.cluster[data-cluster-id="{cluster_id}"]')


def _message(page: Any) -> str:
    box = page.locator("#page-result p")
    box.wait_for()
    return str(box.inner_text())


def test_merge_two_clusters_from_the_page(
    page: Any, server: ServeProcess, prepared: tuple[Path, dict[str, int]], page_errors: list[str]
) -> None:
    who = prepared[1]
    page.goto(server.url + "/unknowns")
    rose = _card(page, who["rose_leslie"])
    crops = rose.locator(".cluster-crops img")
    assert crops.count() == 2
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crops.first.element_handle())
    # A refused change says why on the card and changes nothing.
    rose.locator("form.name-cluster input[name=name]").fill("   ")
    rose.locator("form.name-cluster button[type=submit]").click()
    rose.locator(".results .error").wait_for()
    assert "must not be empty" in rose.locator(".results .error").inner_text()
    assert page_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page_errors.clear()
    rose.locator("form.merge-cluster select").select_option(str(who["kit_harington"]))
    rose.locator("form.merge-cluster button[type=submit]").click()
    _card(page, who["rose_leslie"]).wait_for(state="detached")
    assert f"into #{who['kit_harington']}: 5 tracks" in _message(page)
    assert _card(page, who["kit_harington"]).get_attribute("data-records") == "5"
    assert server.api(f"/api/unknowns/{who['kit_harington']}")["records"] == 5


def test_remove_a_wrong_record_from_the_page(page: Any, server: ServeProcess, prepared: tuple[Path, dict[str, int]]) -> None:
    cid = prepared[1]["biden"]
    page.goto(server.url + "/unknowns")
    card = _card(page, cid)
    card.locator('button[data-action="records"]').click()
    rows = card.locator(".records li")
    assert rows.count() == 2
    wrong = int(rows.first.get_attribute("data-record-id"))
    page.once("dialog", lambda dialog: dialog.accept())
    rows.first.locator('button[data-action="remove-record"]').click()
    assert f"Took track {wrong} out of group #{cid}: 1 left." in _message(page)
    # Seen once now: not recurring, so only "Show all" lists it, with one track left.
    assert _card(page, cid).count() == 0
    page.click("#show-all")
    page.wait_for_url(server.url + "/unknowns?all=true")
    card = _card(page, cid)
    assert card.get_attribute("data-records") == "1"
    assert [r["id"] for r in server.api(f"/api/unknowns/{cid}")["record_list"]] != [wrong]


def test_ignore_and_unignore_from_the_page(page: Any, server: ServeProcess, prepared: tuple[Path, dict[str, int]]) -> None:
    cid = prepared[1]["alex_lacamoire"]
    page.goto(server.url + "/unknowns")
    _card(page, cid).locator('button[data-action="ignore"]').click()
    _card(page, cid).wait_for(state="detached")
    assert f"Group #{cid} ignored (Show all lists it)." == _message(page)
    assert server.api("/api/unknowns?all=true")["clusters"][0]  # still there
    assert cid not in {c["id"] for c in server.api("/api/unknowns")["clusters"]}
    page.goto(server.url + "/unknowns?all=true")
    card = _card(page, cid)
    assert "ignored" in card.locator(".cluster-title").inner_text()
    card.locator('button[data-action="ignore"]').click()
    page.wait_for_function(
        "id => document.querySelector(`.cluster[data-cluster-id='${id}']`).dataset.ignored === 'false'", arg=cid
    )
    assert f"Group #{cid} no longer ignored." == _message(page)
    assert cid in {c["id"] for c in server.api("/api/unknowns")["clusters"]}


def _clip_clusters(server: ServeProcess, clip: str) -> list[dict[str, Any]]:
    return [c for c in server.api("/api/unknowns?all=true")["clusters"] if c["sources"] == [clip]]


def _passes(server: ServeProcess) -> float:
    """How many times the server's one source has played the clip (frames seen or dropped)."""
    source = server.api("/api/sources")["sources"][0]
    return (source["frames"] + source["dropped"]) / CLIP_LENGTH


def _frames(clip: Path) -> list[bytes]:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    out = []
    for index in CLIP_FRAMES:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = cap.read()
        assert ok, index
        out.append(cv2.imencode(".jpg", image)[1].tobytes())
    cap.release()
    return out


def _names(server: ServeProcess, frames: list[bytes]) -> set[str]:
    from .serving import multipart

    names: set[str] = set()
    for data in frames:
        body, kind = multipart({}, [("file", "frame.jpg", data)])
        response = server.request("/api/recognize", method="POST", body=body, headers={"Content-Type": kind})
        assert response.status == 200, response.body[:300]
        names |= {f["name"] for f in response.json()["faces"]}
    return names


@pytest.fixture(scope="module")
def looping(prepared: tuple[Path, dict[str, int]], tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Iterator[ServeProcess]:
    """A server of its own with the same gallery (obama) and no unknowns yet, playing the
    clip again and again: ``serve`` plays a file in real time and drops what it cannot
    keep up with, so on a busy machine one pass may leave no unknown track at all."""
    import shutil

    tmp = tmp_path_factory.mktemp("serve-unknowns-loop")
    shutil.copy(prepared[0] / "gallery.db", tmp / "gallery.db")
    with served(tmp, "--source", str(examples_dir / "short_hamilton_clip.mp4"), "--loop", token=TOKEN) as srv:
        yield srv


def test_serve_records_the_clip_and_naming_its_unknown_from_the_page_makes_recognition_name_them(
    browser: Any, looping: ServeProcess, examples_dir: Path, shots: Path
) -> None:
    server = looping
    clip = examples_dir / "short_hamilton_clip.mp4"
    # Two whole passes first: the first track recorded may be the man seen in profile,
    # whose crops are too weak to enroll (naming it is refused); the clip's star recurs.
    deadline = time.monotonic() + 180
    while _passes(server) < 2 or not _clip_clusters(server, str(clip)):
        assert time.monotonic() < deadline, f"serve played the clip {_passes(server):.1f} times and recorded no unknown in 180 s"
        time.sleep(0.5)
    frames = _frames(clip)
    assert "lin" not in _names(server, frames)
    biggest = max(_clip_clusters(server, str(clip)), key=lambda c: (c["records"], c["faces"], -c["id"]))
    with browser_page(browser, server.url + "/unknowns?all=true", token=TOKEN) as page:
        _name_from_the_page(page, server, biggest, shots)
    assert "lin" in _names(server, frames)


def _name_from_the_page(page: Any, server: ServeProcess, biggest: dict[str, Any], shots: Path) -> None:
    card = _card(page, biggest["id"])
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=card.locator(".cluster-crops img").first.element_handle())
    page.screenshot(path=str(shots / "unknowns.png"), full_page=True)
    card.locator("form.name-cluster input[name=name]").fill("lin")
    card.locator("form.name-cluster button[type=submit]").click()
    message = page.locator("#page-result p")
    refused = card.locator(".results .error")
    message.or_(refused).wait_for(timeout=60_000)
    assert refused.count() == 0, f"naming group #{biggest['id']} was refused: {refused.inner_text()}"
    assert message.inner_text().startswith(f"Group #{biggest['id']} is lin: ")
    link = message.locator("a.person-link")
    assert link.get_attribute("href") == "/people"
    assert _card(page, biggest["id"]).count() == 0
    people = {p["name"]: p for p in server.api("/api/people")["people"]}
    assert people["lin"]["samples"] >= 1 and link.get_attribute("data-person-id") == str(people["lin"]["id"])
