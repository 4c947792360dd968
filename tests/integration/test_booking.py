"""Booking Appointments against Slots on plain writes: a Slot becomes busy in the same
transaction, a second booking (even concurrent) is a 409, cancellation and deletion free the
Slot, availability is a search; both backends."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import LiveServer
from tests.integration.helpers import outcome_text, post, put


def _schedule(server: LiveServer) -> tuple[str, list[str]]:
    pract = post(server, "Practitioner", {"resourceType": "Practitioner"}).json()["id"]
    sched = post(server, "Schedule", {"resourceType": "Schedule", "actor": [
        {"reference": f"Practitioner/{pract}"}]}).json()["id"]
    slots = []
    for hour in (9, 10, 11):
        slots.append(post(server, "Slot", {
            "resourceType": "Slot", "schedule": {"reference": f"Schedule/{sched}"},
            "status": "free", "start": f"2030-01-07T{hour:02d}:00:00Z",
            "end": f"2030-01-07T{hour:02d}:30:00Z"}).json()["id"])
    return sched, slots


def _appointment(slot: str, status: str = "booked") -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": status,
            "slot": [{"reference": f"Slot/{slot}"}],
            "start": "2030-01-07T09:00:00Z", "end": "2030-01-07T09:30:00Z",
            "participant": [{"status": "accepted", "actor": {"display": "someone"}}]}


def _slot_status(server: LiveServer, slot: str) -> str:
    return str(server.http.get(server.url(f"Slot/{slot}")).json()["status"])


def test_book_cancel_rebook(server: LiveServer) -> None:
    sched, (s9, s10, _) = _schedule(server)
    r = post(server, "Appointment", _appointment(s9))
    assert r.status_code == 201
    appt = r.json()
    assert _slot_status(server, s9) == "busy"
    second = post(server, "Appointment", _appointment(s9))
    assert second.status_code == 409
    assert f"Slot/{s9} is already booked" in outcome_text(second)
    free = server.http.get(server.url(
        f"Slot?schedule=Schedule/{sched}&status=free&start=ge2030-01-07")).json()
    assert sorted(e["resource"]["id"] for e in free["entry"]) == sorted([s10, _])
    # cancelling frees the slot; another patient can take it
    appt["status"] = "cancelled"
    assert put(server, f"Appointment/{appt['id']}", appt).status_code == 200
    assert _slot_status(server, s9) == "free"
    other = post(server, "Appointment", _appointment(s9))
    assert other.status_code == 201
    # moving an appointment to another slot frees the first
    moved = other.json()
    moved["slot"] = [{"reference": f"Slot/{s10}"}]
    assert put(server, f"Appointment/{moved['id']}", moved).status_code == 200
    assert (_slot_status(server, s9), _slot_status(server, s10)) == ("free", "busy")
    # deleting frees it too
    assert server.http.delete(server.url(f"Appointment/{moved['id']}")).status_code in (200, 204)
    assert _slot_status(server, s10) == "free"


def test_refused_booking_writes_nothing(server: LiveServer) -> None:
    _, (s9, s10, _) = _schedule(server)
    assert post(server, "Appointment", _appointment(s9)).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Appointment"}, "resource": _appointment(s10)},
        {"request": {"method": "POST", "url": "Appointment"}, "resource": _appointment(s9)},
    ]}
    r = post(server, "", bundle)
    assert r.status_code == 409
    assert _slot_status(server, s10) == "free"  # the first entry rolled back with the rest
    found = server.http.get(server.url(f"Appointment?slot=Slot/{s10}")).json()
    assert not found.get("entry")
    unavailable = server.http.get(server.url(f"Slot/{s10}")).json()
    unavailable["status"] = "busy-unavailable"
    put(server, f"Slot/{s10}", unavailable)
    r = post(server, "Appointment", _appointment(s10))
    assert r.status_code == 409 and "busy-unavailable" in outcome_text(r)
    r = post(server, "Appointment", _appointment("no-such-slot"))
    assert r.status_code == 422
    # a proposed appointment does not hold its slot
    assert post(server, "Appointment", _appointment(s10, "proposed")).status_code == 201


def test_concurrent_double_booking(server: LiveServer) -> None:
    _, (s9, _, _) = _schedule(server)
    body = json.dumps(_appointment(s9))

    def book(_: int) -> int:
        return server.http.post(server.url("Appointment"), data=body, headers={
            "Content-Type": "application/fhir+json"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(book, range(8)))
    assert sorted(codes) == [201] + [409] * 7
    found = server.http.get(server.url(f"Appointment?slot=Slot/{s9}")).json()
    assert len(found["entry"]) == 1
