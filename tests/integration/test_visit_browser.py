"""Two headless Chromium pages (Debian's chromium, fake camera and microphone, driven by
Playwright) open the join links that `$start-visit` gave the practitioner and the patient,
meet in the room and exchange video: frames decoded > 0 in getStats on both sides."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import LiveServer
from tests.integration.test_media_service import Media
from tests.integration.test_media_service import media as media  # noqa: F401  (fixture)
from tests.integration.test_start_visit import _appointment, _parts, _start
from tests.integration.test_start_visit import visit_env as visit_env  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.parametrize("media", ["passthrough"], indirect=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
    # Playwright gives each launch a fresh, empty profile directory of its own.
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync",
            "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        try:
            yield b
        finally:
            b.close()


def _frames(page: Page) -> int:
    counts = page.evaluate("telefhirVisit.framesDecoded()")
    return max(counts.values(), default=0)


def test_two_browsers_meet(server: LiveServer, media: Media, visit_env: None,
                           browser: Browser) -> None:
    appt = _appointment(server)
    _, _, people = _parts(_start(server, appt).json())
    pages = []
    for role in ("practitioner", "patient"):
        context = browser.new_context()
        page = context.new_page()
        page.goto(people[role]["joinUrl"])
        assert page.locator("h1").inner_text() == "Your video visit"
        page.click("#join")
        pages.append(page)
    for page in pages:
        page.wait_for_function("document.getElementById('status').textContent === "
                               "'In the visit' || document.getElementById('status')"
                               ".textContent.includes('joined')", timeout=30_000)
    for page in pages:
        deadline = time.monotonic() + 30
        while _frames(page) <= 10 and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert _frames(page) > 10, page.evaluate("telefhirVisit.state.events")
    # the quality indicator reads the statistics
    pages[0].wait_for_function("['good','fair','poor'].includes("
                               "document.getElementById('quality').textContent)",
                               timeout=20_000)
    for page in pages:
        page.context.close()
