"""An EHR launch as a clinician does it, in Debian's headless Chromium: sign in to the
/launcher page, pick the patient, encounter and app; the app (the JavaScript `fhirclient`
package, SMART's own browser client) follows the launch, the consent page is approved, and
the app reads the patient's data with the token it got
(https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.integration.smart_support import PASSWORD, SmartServer

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def fhir_client_js() -> Path:
    """The fhirclient browser build, installed from the committed lock file."""
    built = BROWSER_DIR / "node_modules" / "fhirclient" / "build" / "fhir-client.js"
    if not built.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True,
                       capture_output=True, timeout=600)
    assert built.exists()
    return built


@pytest.fixture
def app_host(fhir_client_js: Path) -> Iterator[str]:
    """The test app's pages on their own origin."""
    root = Path(tempfile.mkdtemp(prefix="smart-app-"))
    for page in (BROWSER_DIR / "app").iterdir():
        shutil.copy(page, root / page.name)
    shutil.copy(fhir_client_js, root / "fhir-client.js")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    shutil.rmtree(root, ignore_errors=True)


def test_ehr_launch_in_chromium(world: SmartServer, app_host: str) -> None:
    cid, _ = world.register(
        "Chart viewer", redirect_uris=(f"{app_host}/index.html",),
        launch_url=f"{app_host}/launch.html?client_id=")
    # the launch URL carries the client id for the app page (as a real app is configured)
    with world.records.store.transaction() as tx:
        tx.query("UPDATE smart_clients SET launch_url = ? WHERE client_id = ?",
                 (f"{app_host}/launch.html?client_id={cid}", cid))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{world.root}/launcher")
            page.fill("input[name=username]", "doc")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("select[name=patient]")
            page.select_option("select[name=patient]", "pa")
            page.fill("input[name=encounter]", "ea")
            page.select_option("select[name=client_id]", cid)
            page.click("form[method=post][action=\"/launcher\"] button[type=submit]")
            try:
                page.wait_for_selector("button[name=decision][value=approve]", timeout=30_000)
            except Exception as exc:
                raise AssertionError(f"no consent page at {page.url}: {page.content()[:3000]}"
                                     f"\nconsole: {console}") from exc
            assert "Chart viewer" in page.content()
            assert "Alpha" in page.content()  # the patient in context is shown
            page.click("button[name=decision][value=approve]")
            page.wait_for_function(
                "document.getElementById('out') && "
                "document.getElementById('out').textContent !== 'waiting'", timeout=30_000)
            text = page.text_content("#out") or ""
        finally:
            browser.close()
    assert not text.startswith("ERROR"), text
    result = json.loads(text)
    assert result["patient"] == "pa" and result["family"] == "Alpha"
    assert result["encounter"] == "ea"
    assert result["observations"] == ["oa1", "oa2", "oa3"]
    assert result["fhirUser"] == "Practitioner/dr1"  # fhirclient gives it relative to iss
    assert result["banner"] is False  # launched inside the EHR
    assert result["refused"] == 403  # Bob's observation, outside the patient in context
