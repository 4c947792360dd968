"""`$start-visit`, the join links and `$end-visit`, end to end: a live FHIR server, a real
media service process, and two plain aiortc peers that join through the links over WHIP/WHEP
and see each other; every refusal; both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import requests

from operations.visits import settings as visit_settings
from operations.visits.virtual import APPOINTMENT_VIRTUAL, CHANNEL_SYSTEM
from tests.conftest import LiveServer
from tests.integration.helpers import post
from tests.integration.test_media_service import BLUE, RED, Media
from tests.integration.test_media_service import media as media  # noqa: F401  (fixture)
from tests.integration.webrtc_peer import Peer, near, wait_for

pytestmark = pytest.mark.parametrize("media", ["passthrough"], indirect=True)


@pytest.fixture
def visit_env(media: Media, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TELEFHIR_MEDIA_URL", media.base)
    monkeypatch.setenv("TELEFHIR_ICE_SERVERS", "stun:stun.example.org:3478")
    visit_settings.settings.cache_clear()
    yield
    visit_settings.settings.cache_clear()


def _iso(delta_min: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=delta_min)).isoformat(timespec="seconds")


def _appointment(server: LiveServer, status: str = "booked", virtual: bool = True,
                 start: int = -5, end: int = 25, extra_people: int = 0) -> str:
    pract = post(server, "Practitioner", {"resourceType": "Practitioner",
                                          "name": [{"family": "Osler"}]}).json()["id"]
    pat = post(server, "Patient", {"resourceType": "Patient",
                                   "name": [{"family": "Ng"}]}).json()["id"]
    participants = [
        {"actor": {"reference": f"Practitioner/{pract}"}, "status": "accepted"},
        {"actor": {"reference": f"Patient/{pat}"}, "status": "accepted"},
    ]
    for _ in range(extra_people):
        rp = post(server, "RelatedPerson", {"resourceType": "RelatedPerson",
                                            "patient": {"reference": f"Patient/{pat}"}})
        participants.append({"actor": {"reference": f"RelatedPerson/{rp.json()['id']}"},
                             "status": "accepted"})
    appt: dict[str, Any] = {"resourceType": "Appointment", "status": status,
                            "start": _iso(start), "end": _iso(end),
                            "participant": participants}
    if virtual:
        appt["extension"] = [{"url": APPOINTMENT_VIRTUAL, "extension": [
            {"url": "channelType", "valueCoding": {"system": CHANNEL_SYSTEM,
                                                   "code": "audio-video"}}]}]
    r = post(server, "Appointment", appt)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _start(server: LiveServer, appt: str) -> requests.Response:
    return server.http.post(server.url(f"Appointment/{appt}/$start-visit"),
                            headers={"Content-Type": "application/fhir+json"})


def _parts(params: dict[str, Any]) -> tuple[str, str, dict[str, dict[str, Any]]]:
    enc = room = ""
    people: dict[str, dict[str, Any]] = {}
    for p in params["parameter"]:
        if p["name"] == "encounter":
            enc = p["valueReference"]["reference"]
        elif p["name"] == "room":
            room = p["valueString"]
        elif p["name"] == "participant":
            d = {q["name"]: next(v for k, v in q.items() if k.startswith("value"))
                 for q in p["part"]}
            people[d["role"]] = d
    return enc, room, people


def _redeem(url: str) -> requests.Response:
    return requests.post(url, headers={"Accept": "application/json"})


def test_visit_from_start_to_end(server: LiveServer, media: Media, visit_env: None) -> None:
    appt = _appointment(server)
    r = _start(server, appt)
    assert r.status_code == 200, r.text
    enc_ref, room, people = _parts(r.json())
    assert enc_ref.startswith("Encounter/") and room
    assert set(people) == {"practitioner", "patient"}
    ice = [p["valueString"] for p in r.json()["parameter"] if p["name"] == "iceServer"]
    assert ice == ["stun:stun.example.org:3478"]
    enc = server.http.get(server.url(enc_ref)).json()
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "VR"
    assert enc["appointment"] == [{"reference": f"Appointment/{appt}"}]
    assert enc["subject"]["reference"] == people["patient"]["reference"]["reference"]
    assert enc["period"]["start"]

    # a GET (a mail scanner) never consumes the link; the POST redeems it once
    doctor_url = people["practitioner"]["joinUrl"]
    page = requests.get(doctor_url)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    doctor = _redeem(doctor_url)
    assert doctor.status_code == 200, doctor.text
    assert doctor.headers["Cache-Control"] == "no-store"
    d = doctor.json()
    assert {"room", "participant", "token", "whip", "whep", "iceServers"} <= set(d)
    assert d["room"] == room and d["iceServers"] == [{"urls": ["stun:stun.example.org:3478"]}]
    again = _redeem(doctor_url)
    assert again.status_code == 410 and "already been used" in again.json()["error"]
    assert requests.get(doctor_url).status_code == 410
    patient = _redeem(people["patient"]["joinUrl"]).json()

    async def meet() -> None:
        async with aiohttp.ClientSession() as http:
            a = Peer(http, d["whip"], d["whep"], d["token"], RED)
            b = Peer(http, patient["whip"], patient["whep"], patient["token"], BLUE)
            try:
                assert (await a.subscribe(patient["participant"])).status == 201
                assert (await b.subscribe(d["participant"])).status == 201
                assert (await a.publish()).status == 201
                assert (await b.publish()).status == 201
                assert await wait_for(
                    lambda: a.received[patient["participant"]].video_frames >= 15
                    and b.received[d["participant"]].video_frames >= 15)
                assert near(a.received[patient["participant"]].centre[-1], BLUE)
                assert near(b.received[d["participant"]].centre[-1], RED)
            finally:
                await a.close()
                await b.close()

    asyncio.run(meet())

    # idempotent: the same Encounter and room, fresh links
    r2 = _start(server, appt)
    enc2, room2, people2 = _parts(r2.json())
    assert (enc2, room2) == (enc_ref, room)
    assert people2["patient"]["joinUrl"] != people["patient"]["joinUrl"]
    unused = people2["patient"]["joinUrl"]

    end = server.http.post(server.url(f"{enc_ref}/$end-visit"),
                           headers={"Content-Type": "application/fhir+json"})
    assert end.status_code == 200, end.text
    done = end.json()
    assert done["resourceType"] == "Encounter" and done["status"] == "finished"
    assert done["period"]["end"] and done["length"]["code"] == "min"
    doc_part = next(p for p in done["participant"]
                    if p["individual"]["reference"].startswith("Practitioner/"))
    assert doc_part["period"]["start"] <= doc_part["period"]["end"]
    stays = [e for e in done["extension"] if e["url"].endswith("participant-presence")]
    who = {next(x for x in s["extension"] if x["url"] == "participant")["valueReference"][
        "reference"] for s in stays}
    assert who == {people["practitioner"]["reference"]["reference"],
                   people["patient"]["reference"]["reference"]}
    assert [h["status"] for h in done["statusHistory"]] == ["in-progress", "finished"]
    assert server.http.get(server.url(f"Appointment/{appt}")).json()["status"] == "fulfilled"
    # every token and unused link is dead now
    r = requests.post(d["whip"], data="v=0\r\n", headers={
        "Authorization": f"Bearer {d['token']}", "Content-Type": "application/sdp"})
    assert r.status_code == 410
    assert _redeem(unused).status_code == 410
    again = server.http.post(server.url(f"{enc_ref}/$end-visit"),
                             headers={"Content-Type": "application/fhir+json"})
    assert again.status_code == 409


@pytest.mark.parametrize(("kwargs", "status", "words"), [
    ({"status": "cancelled"}, 409, "cancelled"),
    ({"status": "proposed"}, 409, "not yet booked"),
    ({"virtual": False}, 422, "not a virtual visit"),
    ({"start": -120, "end": -60}, 422, "ended"),
    ({"extra_people": 1}, 422, "a room holds 2"),
])
def test_start_visit_refusals(server: LiveServer, media: Media, visit_env: None,
                              kwargs: dict[str, Any], status: int, words: str) -> None:
    appt = _appointment(server, **kwargs)
    r = _start(server, appt)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert words in json.dumps(r.json())
    found = server.http.get(server.url(f"Encounter?appointment=Appointment/{appt}")).json()
    assert not found.get("entry")  # nothing half-written


def test_start_visit_method_and_target(server: LiveServer, media: Media,
                                       visit_env: None) -> None:
    appt = _appointment(server)
    assert server.http.get(server.url(f"Appointment/{appt}/$start-visit")).status_code == 405
    assert _start(server, "no-such-appointment").status_code == 404
    r = server.http.post(server.url("Encounter/nope/$end-visit"),
                         headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 404


def test_expired_link(server: LiveServer, media: Media, visit_env: None,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEFHIR_VISIT_LINK_TTL", "-1")
    visit_settings.settings.cache_clear()
    appt = _appointment(server)
    _, _, people = _parts(_start(server, appt).json())
    r = _redeem(people["patient"]["joinUrl"])
    assert r.status_code == 410 and "expired" in r.json()["error"]
    assert requests.get(people["patient"]["joinUrl"]).status_code == 410
    bad = people["patient"]["joinUrl"].rsplit("/", 1)[0] + "/not-a-link"
    assert _redeem(bad).status_code == 403
    assert requests.post(people["patient"]["joinUrl"]).status_code == 406
