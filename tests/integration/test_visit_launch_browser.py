"""The whole visit in two headless Chromium pages (Debian's chromium, fake camera and
microphone, Playwright): the patient checks in and waits; the clinician signs in to the EHR
launcher, picks the patient and the encounter, consents, and the video app (a registered
SMART app) starts the visit; the patient's waiting page is told the clinician is ready and
joins (or, launched without an encounter, the app shows the live queue and the clinician
starts Ann's visit from it); both decode each other's video; the clinician's note lands in
the chart as a DocumentReference on the Encounter."""

from __future__ import annotations

import base64
import time

import pytest
from playwright.sync_api import Browser, Page

from smart_apps.video.launch import SCOPES
from tests.integration.smart_support import PASSWORD, SmartServer, bearer, token_for
from tests.integration.test_media_service import Media
from tests.integration.test_media_service import media as media  # noqa: F401  (fixture)
from tests.integration.test_start_visit import visit_env as visit_env  # noqa: F401
from tests.integration.test_visit_browser import browser as browser  # noqa: F401
from tests.integration.test_waiting_room import CLINICIAN, PATIENT, _appt, _op, _out
from tests.integration.test_waiting_room import clinic as clinic  # noqa: F401

pytestmark = pytest.mark.parametrize("media", ["passthrough"], indirect=True)


def _frames(page: Page) -> int:
    counts = page.evaluate("telefhirVisit.framesDecoded()")
    return max(counts.values(), default=0)


def _in_visit(page: Page) -> None:
    page.wait_for_function("window.telefhirVisit && telefhirVisit.state.startedAt !== null",
                           timeout=45_000)


def _launch(s: SmartServer, doctor: Page, cid: str, encounter: str) -> None:
    """Sign in to the EHR launcher, pick Ann (and the encounter), launch, consent."""
    doctor.goto(f"{s.root}/launcher")
    doctor.fill("input[name=username]", "doc")
    doctor.fill("input[name=password]", PASSWORD)
    doctor.click("button[type=submit]")
    doctor.wait_for_selector("select[name=patient]")
    doctor.select_option("select[name=patient]", "pa")
    doctor.fill("input[name=encounter]", encounter)
    doctor.select_option("select[name=client_id]", cid)
    doctor.click("form[method=post][action=\"/launcher\"] button[type=submit]")
    doctor.wait_for_selector("button[name=decision][value=approve]", timeout=30_000)
    assert "Video visit" in doctor.content()
    doctor.click("button[name=decision][value=approve]")


def _visit(s: SmartServer, browser: Browser, with_encounter: bool) -> None:
    from datetime import UTC, datetime

    cid, _ = s.register("Video visit", redirect_uris=(f"{s.root}/visit/launch",),
                        launch_url=f"{s.root}/visit/launch", scopes=SCOPES)
    _appt(s, "a1", datetime.now(UTC))
    ann = token_for(s, PATIENT, "ann", patient="pa")
    checked = _op(s, "Appointment/a1/$check-in", ann)
    encounter = _out(checked, "encounter").split("/")[1]
    logs: list[str] = []

    patient = browser.new_context().new_page()
    patient.on("console", lambda m: logs.append(f"patient: {m.text}"))
    patient.goto(_out(checked, "waitingRoom"))
    assert patient.locator("h1").inner_text() == "Waiting room"
    patient.wait_for_function("window.telefhirWaiting && telefhirWaiting.beats > 0")

    doctor = browser.new_context().new_page()
    doctor.on("console", lambda m: logs.append(f"clinician: {m.text}"))
    _launch(s, doctor, cid, encounter if with_encounter else "")
    try:
        if not with_encounter:  # the queue: Ann is here, waiting; start her visit
            row = doctor.locator("tr[data-appointment='Appointment/a1']")
            row.wait_for(timeout=30_000)
            assert "Ann Alpha" in row.inner_text() and "here" in row.inner_text()
            assert "arrived" in row.inner_text()
            row.locator("button.start").click()
        _in_visit(doctor)
        # the waiting page hears that the clinician is ready and joins by itself
        patient.wait_for_url("**/visit/join/**", timeout=30_000)
        _in_visit(patient)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{doctor.url}\n{patient.url}\n" + "\n".join(logs)) from exc
    for page in (doctor, patient):
        deadline = time.monotonic() + 30
        while _frames(page) <= 10 and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert _frames(page) > 10, page.evaluate("telefhirVisit.state.events")

    note = "Seen by video. Rash improving; continue cream for 7 days. Réévaluer à J+7."
    doctor.fill("#note", note)
    doctor.click("#save-note")
    doctor.wait_for_function("document.getElementById('note-status').textContent"
                             ".startsWith('Saved')", timeout=15_000)
    for page in (doctor, patient):
        page.context.close()

    doc = token_for(s, CLINICIAN + " user/DocumentReference.rs")
    found = s.http.get(s.url(f"DocumentReference?encounter=Encounter/{encounter}"),
                       headers=bearer(doc)).json()
    [entry] = found["entry"]
    ref = entry["resource"]
    assert ref["subject"] == {"reference": "Patient/pa"}
    assert ref["author"] == [{"reference": "Practitioner/dr1"}]
    assert ref["context"]["encounter"] == [{"reference": f"Encounter/{encounter}"}]
    assert base64.b64decode(ref["content"][0]["attachment"]["data"]).decode() == note
    enc = s.http.get(s.url(f"Encounter/{encounter}"), headers=bearer(doc)).json()
    assert enc["status"] == "in-progress"
    assert [h["status"] for h in enc["statusHistory"]] == ["arrived", "in-progress"]


def test_clinician_launch_and_patient_link_meet(clinic: SmartServer, media: Media,  # noqa: F811
                                                visit_env: None,  # noqa: F811
                                                browser: Browser) -> None:  # noqa: F811
    _visit(clinic, browser, with_encounter=True)


def test_clinician_starts_from_the_queue(clinic: SmartServer, media: Media,  # noqa: F811
                                         visit_env: None,  # noqa: F811
                                         browser: Browser) -> None:  # noqa: F811
    _visit(clinic, browser, with_encounter=False)
