"""`POST [base]/Encounter/[id]/$end-visit`: close the video room and finish the visit.

In one store transaction: the room is closed (every media token and unused link revoked; the
media service drops the connections within a second), the Encounter set finished with
period.end and length, each participant's join and leave times recorded, and the Appointment
set fulfilled. Practitioners and related persons get Encounter.participant.period (first join
to last leave); every stay of every participant, the patient included (R4's
Encounter.participant.individual cannot be a Patient), is kept in the extension PRESENCE.
Definition: operations/definitions/OperationDefinition-Encounter-end-visit.json."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import now_us, parse_instant_us, to_instant
from fhir_server.writes import check_resource, store_resource
from operations.parameters import Params
from operations.registry import CANONICAL_BASE, OperationCall, operation
from operations.visits import rooms
from resources import json_numbers

PRESENCE = f"{CANONICAL_BASE}/StructureDefinition/participant-presence"
ENDABLE = ("arrived", "triaged", "in-progress", "onleave")


def _presence(tx: StoreTx, room: str) -> dict[str, list[tuple[int, int]]]:
    stays: dict[str, list[tuple[int, int]]] = {}
    end = now_us()
    for pid, joined, left in rooms.presence(tx, room):
        stays.setdefault(pid, []).append((joined, left if left is not None else end))
    return stays


def _with_times(enc: dict[str, Any], tx: StoreTx, room: str) -> dict[str, Any]:
    who = rooms.participants(tx, room)
    stays = _presence(tx, room)
    by_ref = {who[pid][0]: s for pid, s in stays.items() if pid in who}
    participants = []
    for p in enc.get("participant") or []:
        ref = (p.get("individual") or {}).get("reference")
        if ref in by_ref:
            s = by_ref[ref]
            p = {**p, "period": {"start": to_instant(min(a for a, _ in s)),
                                 "end": to_instant(max(b for _, b in s))}}
        participants.append(p)
    if participants:
        enc["participant"] = participants
    exts = [e for e in enc.get("extension") or [] if e.get("url") != PRESENCE]
    for ref, s in sorted(by_ref.items()):
        for a, b in s:
            exts.append({"url": PRESENCE, "extension": [
                {"url": "participant", "valueReference": {"reference": ref}},
                {"url": "period", "valuePeriod": {"start": to_instant(a), "end": to_instant(b)}},
            ]})
    if exts:
        enc["extension"] = exts
    return enc


def _fulfil_appointments(call: OperationCall, tx: StoreTx, enc: dict[str, Any]) -> None:
    for a in enc.get("appointment") or []:
        rtype, _, rid = str(a.get("reference", "")).partition("/")
        if rtype != "Appointment":
            continue
        stored = tx.read("Appointment", rid)
        if stored is None or stored.deleted or stored.body is None:
            continue
        appt = json_numbers.loads(stored.body)
        if appt.get("status") in ("fulfilled", "cancelled", "noshow", "entered-in-error"):
            continue
        appt["status"] = "fulfilled"
        check_resource(appt, "Appointment")
        store_resource(call.ctx, tx, appt, rid, stored, "PUT")


@operation("OperationDefinition-Encounter-end-visit", affects_state=True,
           needs=("Encounter.ru", "Appointment.u"))
def end_visit(call: OperationCall) -> Params:
    """Close the room, finish the Encounter, fulfil the Appointment."""
    with call.ctx.writing() as tx:
        stored = call.target(tx)
        assert stored.body is not None
        enc = json_numbers.loads(stored.body)
        if enc.get("status") not in ENDABLE:
            raise FhirError.of(409, "conflict", f"The encounter is {enc.get('status')}: only "
                               f"an encounter that is {', '.join(ENDABLE)} can end",
                               "Encounter.status")
        enc_ref = f"Encounter/{stored.res_id}"
        room = rooms.room_for_encounter(tx, enc_ref)
        if room is not None:
            rooms.close_room(tx, room.room)
            enc = _with_times(enc, tx, room.room)
        end = now_us()
        period = dict(enc.get("period") or {})
        period["end"] = to_instant(end)
        enc["period"] = period
        enc["status"] = "finished"
        began = parse_instant_us(str(period.get("start", "")))
        if began is not None:
            minutes = max(0.0, (end - began[0]) / 60e6)
            enc["length"] = {"value": round(minutes, 2), "unit": "min",
                             "system": "http://unitsofmeasure.org", "code": "min"}
        check_resource(enc, "Encounter")
        written = store_resource(call.ctx, tx, enc, stored.res_id, stored, "PUT")
        _fulfil_appointments(call, tx, enc)
    assert written.body is not None
    return Params().add("return", json_numbers.loads(written.body))
