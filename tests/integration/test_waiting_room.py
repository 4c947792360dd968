"""The waiting room end to end on a live, authorized server over both backends:
`Appointment/$check-in` (intake forms, Encounter.location, every refusal), the clinician's
queue pushed as Server-Sent Events (read with the third-party sseclient-py) on check-in,
heartbeat loss and start, in the practitioner's time zone, and the patient's "ready" event
that hands over a single-use join link."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sseclient

from operations.billing.gather import location_types
from operations.visits import settings as visit_settings
from operations.visits.timezones import TIMEZONE_EXT, day_bounds, today, zone
from operations.visits.virtual import APPOINTMENT_VIRTUAL, CHANNEL_SYSTEM
from tests.integration.audit_support import audit_events, auditor_token, queries
from tests.integration.smart_support import SmartServer, bearer, token_for

BILLING_DATA = Path(__file__).resolve().parents[2] / "operations" / "billing" / "data"
INTAKE = "https://clinic.example.org/Questionnaire/tele-intake"
VISIT_TYPE = "http://clinic.example.org/visit-type|TELE-NEW"
CLINICIAN = ("user/Appointment.rus user/Encounter.crus user/Patient.rs "
             "user/QuestionnaireResponse.rs user/Location.rs")
PATIENT = ("launch/patient patient/Appointment.rus patient/Encounter.crus "
           "patient/QuestionnaireResponse.crs")


@pytest.fixture(autouse=True)
def visit_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TELEFHIR_INTAKE_QUESTIONNAIRES", f"{VISIT_TYPE}={INTAKE}")
    monkeypatch.setenv("TELEFHIR_HEARTBEAT_GONE", "2")
    monkeypatch.setenv("TELEFHIR_QUEUE_POLL", "0.2")
    monkeypatch.setenv("TELEFHIR_STREAM_SECONDS", "60")
    visit_settings.settings.cache_clear()
    yield
    visit_settings.settings.cache_clear()


def _tz(tz: str) -> list[dict[str, str]]:
    return [{"url": TIMEZONE_EXT, "valueCode": tz}]


@pytest.fixture
def clinic(smart: SmartServer) -> SmartServer:
    """dr1 (Asia/Kolkata) and dr2; patients pa (Ann, America/New_York) and pb (Bob); users
    doc (dr1), ann (pa), bob (pb)."""
    s = smart
    s.seed({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Osler"}],
            "extension": _tz("Asia/Kolkata")})
    s.seed({"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Other"}]})
    s.seed({"resourceType": "Patient", "id": "pa", "extension": _tz("America/New_York"),
            "name": [{"given": ["Ann"], "family": "Alpha"}]})
    s.seed({"resourceType": "Patient", "id": "pb", "name": [{"given": ["Bob"],
                                                             "family": "Beta"}]})
    s.add_user("doc", "Practitioner/dr1")
    s.add_user("ann", "Patient/pa")
    s.add_user("bob", "Patient/pb")
    return s


def _kolkata_day() -> tuple[datetime, datetime]:
    kol = zone("Asia/Kolkata")
    assert kol
    lo, hi = day_bounds(today(kol), kol)
    return datetime.fromisoformat(lo), datetime.fromisoformat(hi)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def _appt(s: SmartServer, aid: str, start: datetime, patient: str = "pa",
          practitioner: str = "dr1", *, status: str = "booked", virtual: bool = True,
          visit_type: bool = False, end: datetime | None = None) -> str:
    body: dict[str, Any] = {
        "resourceType": "Appointment", "id": aid, "status": status, "start": _iso(start),
        "end": _iso(end or datetime.now(UTC) + timedelta(hours=2)),
        "participant": [{"actor": {"reference": f"Practitioner/{practitioner}"},
                         "status": "accepted"},
                        {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]}
    if virtual:
        body["extension"] = [{"url": APPOINTMENT_VIRTUAL, "extension": [
            {"url": "channelType", "valueCoding": {"system": CHANNEL_SYSTEM,
                                                   "code": "audio-video"}}]}]
    if visit_type:
        system, _, code = VISIT_TYPE.partition("|")
        body["appointmentType"] = {"coding": [{"system": system, "code": code}]}
    s.seed(body)
    return aid


def _op(s: SmartServer, path: str, token: dict[str, Any],
        params: list[dict[str, Any]] | None = None) -> requests.Response:
    body = {"resourceType": "Parameters", "parameter": params or []}
    return s.http.post(s.url(path), data=json.dumps(body),
                       headers={**bearer(token), "Content-Type": "application/fhir+json"})


def _out(resp: requests.Response, name: str) -> Any:
    assert resp.status_code == 200, resp.text
    for p in resp.json()["parameter"]:
        if p["name"] == name:
            return p.get("valueReference", {}).get("reference") or p.get("valueUrl")
    return None


def _read(s: SmartServer, ref: str, token: dict[str, Any]) -> dict[str, Any]:
    r = s.http.get(s.url(ref), headers=bearer(token))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _issues(resp: requests.Response) -> str:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " | ".join(i.get("diagnostics", "") for i in body["issue"])


class Events:
    """An SSE stream read by sseclient-py in a thread; `until` waits for a matching event."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.resp = requests.get(url, headers={**headers, "Accept": "text/event-stream"},
                                 stream=True, timeout=(5, 30))
        assert self.resp.status_code == 200, self.resp.text
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.got: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for ev in sseclient.SSEClient(self.resp).events():
                self.got.put((ev.event, json.loads(ev.data)))
        except Exception:  # the test closed the stream
            pass

    def until(self, test: Callable[[str, dict[str, Any]], bool],
              timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                name, data = self.got.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append((name, data))
            if test(name, data):
                return data
        raise AssertionError(f"no such event; got {self.seen}")

    def close(self) -> None:
        self.resp.close()


def _item(data: dict[str, Any], appt: str) -> dict[str, Any]:
    return next(i for i in data["queue"] if i["appointment"] == f"Appointment/{appt}")


def test_check_in_home_then_start(clinic: SmartServer) -> None:
    s = clinic
    lo, _hi = _kolkata_day()
    _appt(s, "a1", lo + timedelta(hours=1))
    ann = token_for(s, PATIENT, "ann", patient="pa")
    r = _op(s, "Appointment/a1/$check-in", ann)
    enc_ref = _out(r, "encounter")
    assert _out(r, "appointment") == "Appointment/a1"
    assert _out(r, "waitingRoom").startswith(f"{s.root}/visit/wait/")
    doc = token_for(s, CLINICIAN)
    assert _read(s, "Appointment/a1", doc)["status"] == "arrived"
    enc = _read(s, enc_ref, doc)
    assert enc["status"] == "arrived" and enc["class"]["code"] == "VR"
    assert enc["subject"] == {"reference": "Patient/pa"}
    assert [h["status"] for h in enc["statusHistory"]] == ["arrived"]
    home = _read(s, enc["location"][0]["location"]["reference"], doc)
    assert home["mode"] == "kind"
    # what $submit-claim reads for the place of service: a home Location type (POS 10)
    rules = json.loads((BILLING_DATA / "medicare-part-b-rules-2026-2027.json").read_text())
    wanted = {(t["system"], t["code"]) for t in rules["placeOfService"]["homeLocationTypes"]}
    assert wanted & set(location_types(home))
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "PTRES"} \
        .items() <= home["type"][0]["coding"][0].items()
    # checking in again: the same Encounter, one shared home Location, a fresh pass
    again = _op(s, "Appointment/a1/$check-in", ann)
    assert _out(again, "encounter") == enc_ref
    assert _out(again, "waitingRoom") != _out(r, "waitingRoom")
    homes = s.http.get(s.url("Location"), headers=bearer(doc)).json()
    assert homes["total"] == 1 if "total" in homes else len(homes["entry"]) == 1
    # the clinician starts: the same Encounter goes in-progress, the wait is on record
    started = _op(s, "Appointment/a1/$start-visit", doc)
    assert _out(started, "encounter") == enc_ref
    enc = _read(s, enc_ref, doc)
    assert enc["status"] == "in-progress"
    arrived, progress = enc["statusHistory"]
    assert arrived["status"] == "arrived" and arrived["period"]["end"]
    assert progress["status"] == "in-progress" and "end" not in progress["period"]
    assert enc["location"][0]["location"] == {"reference": home["resourceType"] + "/"
                                              + home["id"]}


def test_check_in_at_a_site_location(clinic: SmartServer) -> None:
    s = clinic
    s.seed({"resourceType": "Location", "id": "kiosk", "name": "Pharmacy kiosk",
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "v3-RoleCode", "code": "PHARM"}]}]})
    _appt(s, "a1", datetime.now(UTC))
    doc = token_for(s, CLINICIAN)
    r = _op(s, "Appointment/a1/$check-in", doc,
            [{"name": "location", "valueReference": {"reference": "Location/kiosk"}}])
    enc = _read(s, _out(r, "encounter"), doc)
    assert enc["location"] == [{"location": {"reference": "Location/kiosk"},
                                "status": "active"}]


def _qr(s: SmartServer, qid: str, **over: Any) -> str:
    s.seed({"resourceType": "QuestionnaireResponse", "id": qid, "status": "completed",
            "questionnaire": INTAKE, "subject": {"reference": "Patient/pa"}, **over})
    return f"QuestionnaireResponse/{qid}"


def _given(ref: str) -> list[dict[str, Any]]:
    return [{"name": "questionnaireResponse", "valueReference": {"reference": ref}}]


def test_intake_required_refusals_write_nothing(clinic: SmartServer) -> None:
    s = clinic
    _appt(s, "a1", datetime.now(UTC), visit_type=True)
    ann = token_for(s, PATIENT, "ann", patient="pa")
    s.seed({"resourceType": "Encounter", "id": "other", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": "Patient/pa"}})
    cases = [
        (None, "none is linked to this visit"),
        (_qr(s, "draft", status="in-progress"), "is in-progress, not completed"),
        (_qr(s, "wrongq", questionnaire="https://clinic.example.org/Questionnaire/other"),
         "not " + INTAKE),
        (_qr(s, "bob", subject={"reference": "Patient/pb"}), "not Patient/pa"),
        (_qr(s, "elsewhere", encounter={"reference": "Encounter/other"}),
         "another encounter"),
        ("QuestionnaireResponse/nope", "is not known"),
    ]
    for given, says in cases:
        r = _op(s, "Appointment/a1/$check-in", ann, _given(given) if given else None)
        assert r.status_code == 422, (given, r.text)
        assert says in _issues(r) and INTAKE in _issues(r), (given, _issues(r))
    doc = token_for(s, CLINICIAN)
    assert _read(s, "Appointment/a1", doc)["status"] == "booked"
    encs = s.http.get(s.url("Encounter?appointment=Appointment/a1"), headers=bearer(doc))
    assert not encs.json().get("entry"), encs.text
    # a completed form of the right Questionnaire, about Ann, any version: accepted and linked
    good = _qr(s, "good", questionnaire=f"{INTAKE}|2.1")
    r = _op(s, "Appointment/a1/$check-in", ann, _given(good))
    assert _out(r, "questionnaireResponse") == good
    appt = _read(s, "Appointment/a1", doc)
    assert appt["status"] == "arrived"
    assert {"reference": good} in appt["supportingInformation"]
    # once linked, checking in again needs no parameter
    assert _out(_op(s, "Appointment/a1/$check-in", ann), "questionnaireResponse") == good


def test_intake_linked_by_encounter(clinic: SmartServer) -> None:
    s = clinic
    _appt(s, "a1", datetime.now(UTC), visit_type=True)
    s.seed({"resourceType": "Encounter", "id": "e1", "status": "planned",
            "class": {"code": "VR"}, "subject": {"reference": "Patient/pa"},
            "appointment": [{"reference": "Appointment/a1"}]})
    form = _qr(s, "onenc", encounter={"reference": "Encounter/e1"})
    ann = token_for(s, PATIENT, "ann", patient="pa")
    r = _op(s, "Appointment/a1/$check-in", ann)
    assert _out(r, "encounter") == "Encounter/e1"
    assert _out(r, "questionnaireResponse") == form
    doc = token_for(s, CLINICIAN)
    assert _read(s, "Encounter/e1", doc)["status"] == "arrived"


def test_check_in_refusals(clinic: SmartServer) -> None:
    s = clinic
    now = datetime.now(UTC)
    _appt(s, "cancelled", now, status="cancelled")
    _appt(s, "proposed", now, status="proposed")
    _appt(s, "office", now, virtual=False)
    _appt(s, "past", now - timedelta(hours=3), end=now - timedelta(hours=2))
    _appt(s, "ok", now)
    doc = token_for(s, CLINICIAN)
    for aid, status, says in [("cancelled", 409, "cancelled"), ("proposed", 409, "proposed"),
                              ("office", 422, "not a virtual visit"), ("past", 422, "ended"),
                              ("missing", 404, "")]:
        r = _op(s, f"Appointment/{aid}/$check-in", doc)
        assert r.status_code == status, (aid, r.text)
        assert says in _issues(r)
    r = _op(s, "Appointment/ok/$check-in", doc,
            [{"name": "location", "valueReference": {"reference": "Location/nowhere"}}])
    assert r.status_code == 422 and "Location/nowhere" in _issues(r)
    assert _read(s, "Appointment/ok", doc)["status"] == "booked"
    # Bob may not check Ann in; no token at all is a 401
    bob = token_for(s, PATIENT, "bob", patient="pb")
    assert _op(s, "Appointment/ok/$check-in", bob).status_code in (403, 404)
    r = s.http.post(s.url("Appointment/ok/$check-in"),
                    headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 401


def test_queue_order_live_events_and_heartbeat(clinic: SmartServer) -> None:
    s = clinic
    lo, hi = _kolkata_day()
    _appt(s, "later1", lo + timedelta(minutes=90), "pa")
    _appt(s, "later2", lo + timedelta(minutes=90), "pb")
    _appt(s, "early", lo + timedelta(minutes=30), "pa")
    _appt(s, "tomorrow", hi + timedelta(hours=1), "pa")
    _appt(s, "office", lo + timedelta(minutes=40), "pa", virtual=False)
    _appt(s, "dr2s", lo + timedelta(minutes=40), "pa", practitioner="dr2")
    doc = token_for(s, CLINICIAN)
    ann = token_for(s, PATIENT, "ann", patient="pa")
    url = f"{s.root}/visit/queue/events?practitioner=Practitioner/dr1"
    events = Events(url, bearer(doc))
    try:
        first = events.until(lambda name, _d: name == "queue")
        assert first["zone"] == "Asia/Kolkata"
        assert [i["appointment"] for i in first["queue"]] == [
            "Appointment/early", "Appointment/later1", "Appointment/later2"]
        early = _item(first, "early")
        assert early["startLocal"]["zone"] == "Asia/Kolkata"
        assert early["startLocal"]["time"] == "00:30"
        assert early["patient"]["display"] == "Ann Alpha"
        assert early["patient"]["startLocal"]["zone"] == "America/New_York"
        assert early["arrived"] is None and early["present"] is False
        # Bob checks in to later2 before Ann to later1: later2 goes first (arrival order)
        _op(s, "Appointment/later2/$check-in", doc)
        wait = _out(_op(s, "Appointment/later1/$check-in", ann), "waitingRoom")
        data = events.until(lambda _n, d: _item(d, "later1")["arrived"] is not None)
        assert [i["appointment"] for i in data["queue"]] == [
            "Appointment/early", "Appointment/later2", "Appointment/later1"]
        one = _item(data, "later1")
        assert one["encounterStatus"] == "arrived" and one["present"] is True
        assert one["waitedSeconds"] >= 0 and one["arrivedLocal"]["zone"] == "Asia/Kolkata"
        # no heartbeat for longer than TELEFHIR_HEARTBEAT_GONE: the patient is gone ...
        events.until(lambda _n, d: _item(d, "later1")["present"] is False)
        # ... and back with the next ping from their page
        beat = requests.post(f"{wait}/heartbeat", timeout=5)
        assert beat.status_code == 200, beat.text
        events.until(lambda _n, d: _item(d, "later1")["present"] is True)
        # the clinician starts the visit: the queue says so
        _op(s, "Appointment/later1/$start-visit", doc)
        events.until(lambda _n, d: _item(d, "later1")["encounterStatus"] == "in-progress")
    finally:
        events.close()
    # the same queue once, as JSON, for another day in the practitioner's zone
    kol = zone("Asia/Kolkata")
    assert kol
    tomorrow = (today(kol) + timedelta(days=1)).isoformat()
    r = s.http.get(f"{s.root}/visit/queue?practitioner=Practitioner/dr1&date={tomorrow}",
                   headers=bearer(doc))
    assert [i["appointment"] for i in r.json()["queue"]] == ["Appointment/tomorrow"]


def test_queue_refusals_and_stream_bound(clinic: SmartServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    s = clinic
    url = f"{s.root}/visit/queue/events?practitioner=Practitioner/dr1"
    r = requests.get(url, timeout=5)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    no_appts = token_for(s, "user/Patient.rs")
    assert requests.get(url, headers=bearer(no_appts), timeout=5).status_code == 403
    doc = token_for(s, CLINICIAN)
    for bad, status in [("practitioner=Patient/pa", 400), ("practitioner=Practitioner/nope",
                                                          404),
                        ("practitioner=Practitioner/dr1&date=tomorrow", 400)]:
        r = requests.get(f"{s.root}/visit/queue/events?{bad}", headers=bearer(doc), timeout=5)
        assert r.status_code == status, (bad, r.text)
    monkeypatch.setenv("TELEFHIR_STREAMS", "1")
    visit_settings.settings.cache_clear()
    held = Events(url, bearer(doc))
    try:
        held.until(lambda name, _d: name == "queue")
        r = requests.get(url, headers=bearer(doc), timeout=5)
        assert r.status_code == 503 and r.headers["Retry-After"]
    finally:
        held.close()
    deadline = time.monotonic() + 10  # the slot comes back when the client goes away
    while time.monotonic() < deadline:
        r = requests.get(url, headers=bearer(doc), stream=True, timeout=5)
        r.close()
        if r.status_code == 200:
            break
        time.sleep(0.3)
    assert r.status_code == 200


def test_patient_waits_then_gets_a_join_link(clinic: SmartServer) -> None:
    s = clinic
    _appt(s, "a1", datetime.now(UTC) + timedelta(minutes=10))
    ann = token_for(s, PATIENT, "ann", patient="pa")
    wait = _out(_op(s, "Appointment/a1/$check-in", ann), "waitingRoom")
    page = requests.get(wait, timeout=5)
    assert page.status_code == 200 and "Waiting room" in page.text
    assert "America/New_York" in page.text  # Ann's own time zone
    events = Events(f"{wait}/events", {})
    try:
        first = events.until(lambda _n, _d: True)
        assert first["state"] == "waiting"
        assert first["startLocal"]["zone"] == "America/New_York"
        doc = token_for(s, CLINICIAN)
        _op(s, "Appointment/a1/$start-visit", doc)
        ready = events.until(lambda name, _d: name == "ready")
    finally:
        events.close()
    join = ready["joinUrl"]
    assert join.startswith(f"{s.root}/visit/join/")
    page = requests.get(join, timeout=5)  # GET never consumes it
    assert page.status_code == 200
    when = ready["startLocal"]
    assert f'datetime="{when["iso"]}"' in page.text and "America/New_York" in page.text
    redeemed = requests.post(join, headers={"Accept": "application/json"}, timeout=5)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["participant"] == "patient-pa"
    assert requests.post(join, headers={"Accept": "application/json"},
                         timeout=5).status_code == 410
    # a pass that is not one
    assert requests.post(f"{s.root}/visit/wait/not-a-pass/heartbeat",
                         timeout=5).status_code == 403
    assert requests.get(f"{s.root}/visit/wait/not-a-pass", timeout=5).status_code == 403


def test_launch_page_needs_registration(clinic: SmartServer) -> None:
    s = clinic
    page = requests.get(f"{s.root}/visit/launch?iss={s.base}&launch=x", timeout=5)
    assert page.status_code == 503 and "telefhir apps register" in page.text
    cid, _ = s.register("Video visit", redirect_uris=(f"{s.root}/visit/launch",),
                        launch_url=f"{s.root}/visit/launch")
    page = requests.get(f"{s.root}/visit/launch?iss={s.base}&launch=x", timeout=5)
    assert page.status_code == 200 and f'data-client-id="{cid}"' in page.text


def test_stream_ends_on_revocation_and_after_its_life(clinic: SmartServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from smart_apps.records import digest

    s = clinic
    doc = token_for(s, CLINICIAN)
    url = f"{s.root}/visit/queue/events?practitioner=Practitioner/dr1"
    events = Events(url, bearer(doc))
    try:
        events.until(lambda name, _d: name == "queue")
        s.records.revoke(digest(doc["access_token"]))
        ended = events.until(lambda name, _d: name == "error")
        assert ended["status"] == 401 and ended["resourceType"] == "OperationOutcome"
    finally:
        events.close()
    monkeypatch.setenv("TELEFHIR_STREAM_SECONDS", "1")
    visit_settings.settings.cache_clear()
    fresh = token_for(s, CLINICIAN)
    events = Events(url, bearer(fresh))
    try:
        events.until(lambda name, _d: name == "queue")
        assert events.until(lambda name, _d: name == "reconnect") == {"after": 1}
    finally:
        events.close()


def test_a_live_queue_audits_each_query_once_not_each_poll(clinic: SmartServer) -> None:
    """The stream re-reads the queue every TELEFHIR_QUEUE_POLL (0.2 s here): the audit trail
    records each distinct search of it once (BALP Query), and again when the queue's contents
    make the search change (a newly checked-in patient), not several events a second."""
    s = clinic
    lo, _hi = _kolkata_day()
    _appt(s, "a1", lo + timedelta(minutes=30), "pa")
    doc = token_for(s, CLINICIAN)
    events = Events(f"{s.root}/visit/queue/events?practitioner=Practitioner/dr1", bearer(doc))
    try:
        events.until(lambda name, _d: name == "queue")
        time.sleep(2.0)  # about ten polls
        _op(s, "Appointment/a1/$check-in", doc)
        events.until(lambda _n, d: _item(d, "a1")["arrived"] is not None)
        time.sleep(1.0)
    finally:
        events.close()
    audits = audit_events(s, auditor_token(s), "subtype=search-type")
    appointment_searches = [e for e in audits
                            if any(q.startswith("Appointment?") for q in queries(e))]
    assert len(appointment_searches) == 1, [queries(e) for e in appointment_searches]
    encounter_searches = [e for e in audits if any(q.startswith("Encounter?") for q in queries(e))]
    assert 1 <= len(encounter_searches) <= 2, [queries(e) for e in encounter_searches]
