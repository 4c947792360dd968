"""`POST [base]/Appointment/[id]/$start-visit`: open the video visit of a virtual Appointment.

In one store transaction: the Appointment is read (and locked), its Encounter created or
reused (class VR, status in-progress, period.start, appointment, subject and participants),
a video room opened for that Encounter, and a single-use join link issued per participant.
The room exists before the Encounter is in progress commits (one transaction), unlike systems
that mark the Encounter first. Definition: operations/definitions/
OperationDefinition-Appointment-start-visit.json."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from fhir_server.interactions.create import new_id
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import now_us, parse_instant_us, to_instant
from fhir_server.writes import check_resource, store_resource
from operations.parameters import Params
from operations.registry import OperationCall, operation
from operations.visits import rooms
from operations.visits.settings import settings
from operations.visits.virtual import VIRTUAL_CLASS, encounter_virtual_service, is_virtual
from resources import json_numbers

STARTABLE = ("booked", "arrived", "checked-in")
_PEOPLE = {"Patient": "patient", "Practitioner": "practitioner",
           "PractitionerRole": "practitioner", "RelatedPerson": "related-person"}
_DONE = ("finished", "cancelled", "entered-in-error")


def _refuse(status: int, message: str, expression: str | None = None) -> FhirError:
    return FhirError.of(status, "business-rule" if status == 422 else "conflict", message,
                        expression)


def people(appointment: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(participant id, reference, Appointment.participant) for every person taking part
    (Patient, Practitioner, PractitionerRole, RelatedPerson) who has not declined."""
    out = []
    for p in appointment.get("participant") or []:
        ref = ((p.get("actor") or {}).get("reference") or "") if isinstance(p, dict) else ""
        rtype, _, rid = ref.partition("/")
        if rtype in _PEOPLE and rid and "/" not in rid and p.get("status") != "declined":
            out.append((f"{rtype.lower()}-{rid}", ref, p))
    return out


def check_startable(appointment: dict[str, Any]) -> None:
    """409/422 with an OperationOutcome when the Appointment cannot start a visit now."""
    status = appointment.get("status")
    if status in ("cancelled", "noshow", "entered-in-error", "fulfilled"):
        raise _refuse(409, f"The appointment is {status}: no visit can start",
                      "Appointment.status")
    if status not in STARTABLE:
        raise _refuse(409, f"The appointment is {status}, not yet booked: a visit starts from "
                      f"{', '.join(STARTABLE)}", "Appointment.status")
    if not is_virtual(appointment, settings()):
        raise _refuse(422, "The appointment is not a virtual visit (no virtualService "
                      "extension and no virtual visit type)", "Appointment")
    end = parse_instant_us(str(appointment.get("end", "")))
    if end is not None and end[1] < now_us():
        raise _refuse(422, f"The appointment ended at {appointment['end']}", "Appointment.end")


def find_encounter(call: OperationCall, tx: StoreTx, appt_ref: str) -> dict[str, Any] | None:
    found = call.ctx.search_engine.find_ids(tx, "Encounter", [("appointment", appt_ref)])
    for _pk, eid in found:
        stored = tx.read("Encounter", eid)
        if stored is None or stored.deleted or stored.body is None:
            continue
        enc: dict[str, Any] = json_numbers.loads(stored.body)
        if enc.get("status") not in _DONE:
            return enc
    return None


def visit_encounter(appointment: dict[str, Any], appt_ref: str,
                    existing: dict[str, Any] | None,
                    attendees: list[tuple[str, str, dict[str, Any]]],
                    status: str = "in-progress") -> dict[str, Any]:
    """The Encounter of the visit booked as `appointment` (`existing` updated, or a new one)
    with `status`; period.start is set when the visit starts (in-progress), not on arrival."""
    enc: dict[str, Any] = dict(existing) if existing else {"resourceType": "Encounter"}
    enc["status"] = status
    enc["class"] = VIRTUAL_CLASS
    exts = [e for e in enc.get("extension") or []
            if e.get("url") != encounter_virtual_service(appointment)["url"]]
    enc["extension"] = [*exts, encounter_virtual_service(appointment)]
    patient = next((ref for _, ref, _ in attendees if ref.startswith("Patient/")), None)
    if patient and "subject" not in enc:
        enc["subject"] = {"reference": patient}
    refs = {a.get("reference") for a in enc.get("appointment") or []}
    if appt_ref not in refs:
        enc["appointment"] = [*(enc.get("appointment") or []), {"reference": appt_ref}]
    have = {(p.get("individual") or {}).get("reference") for p in enc.get("participant") or []}
    participants = list(enc.get("participant") or [])
    for _, ref, ap in attendees:
        if ref.startswith("Patient/") or ref in have:
            continue
        entry: dict[str, Any] = {"individual": {"reference": ref}}
        if ap.get("type"):
            entry["type"] = ap["type"]
        participants.append(entry)
    if participants:
        enc["participant"] = participants
    if status == "in-progress":
        period = dict(enc.get("period") or {})
        period.setdefault("start", to_instant(now_us()))
        enc["period"] = period
    for field in ("serviceType", "reasonCode", "reasonReference"):
        if field not in enc and appointment.get(field):
            value = appointment[field]
            enc[field] = value[0] if field == "serviceType" and isinstance(value, list) else value
    return enc


def web_root(call: OperationCall) -> str:
    """The server's root URL (the FHIR base without its path), where /visit/... pages are."""
    base, path = call.req.base_url, call.ctx.config.base_path
    return base[: -len(path)] if path and base.endswith(path) else base


@operation("OperationDefinition-Appointment-start-visit", affects_state=True,
           needs=("Appointment.r", "Encounter.cu"))
def start_visit(call: OperationCall) -> Params:
    """Create or reuse the Encounter, open the room, issue one join link per participant."""
    cfg = settings()
    with call.ctx.writing() as tx:
        stored = call.target(tx)
        assert stored.body is not None
        appointment = json_numbers.loads(stored.body)
        check_startable(appointment)
        attendees = people(appointment)
        if not attendees:
            raise _refuse(422, "The appointment has no Patient, Practitioner or RelatedPerson "
                          "participant", "Appointment.participant")
        if len(attendees) > cfg.room_capacity:
            raise _refuse(422, f"The appointment has {len(attendees)} participants; a room "
                          f"holds {cfg.room_capacity} (TELEFHIR_ROOM_CAPACITY)",
                          "Appointment.participant")
        appt_ref = f"Appointment/{stored.res_id}"
        tx.lock(f"start-visit:{appt_ref}")
        existing = find_encounter(call, tx, appt_ref)
        enc = visit_encounter(appointment, appt_ref, existing, attendees)
        if existing is not None and enc == existing:
            enc_ref = f"Encounter/{existing['id']}"  # already in progress: nothing to write
        else:
            check_resource(enc, "Encounter")
            before = tx.read("Encounter", existing["id"]) if existing else None
            written = store_resource(call.ctx, tx, enc, existing["id"] if existing else new_id(),
                                     before, "PUT" if existing else "POST")
            enc_ref = f"Encounter/{written.res_id}"
        room = rooms.open_room(tx, enc_ref, cfg.media_url, cfg.room_capacity)
        root = web_root(call)
        out = Params().add("encounter", {"reference": enc_ref}).add("room", room.room)
        for url in cfg.ice_servers:
            out.add("iceServer", url)
        for pid, ref, _ in attendees:
            role = _PEOPLE[ref.split("/")[0]]
            secret = rooms.issue_link(tx, rooms.Grant(room.room, pid, ref, role), cfg.link_ttl_s)
            out.add("participant", Params().add("id", pid).add("reference", {"reference": ref})
                    .add("role", role).add("joinUrl", f"{root}/visit/join/{secret}"))
    return out
