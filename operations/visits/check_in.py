"""`POST [base]/Appointment/[id]/$check-in`: the patient enters the waiting room of a virtual
visit (https://hl7.org/fhir/R4/appointment.html#statemachine: booked -> arrived).

In one store transaction: the intake form the visit type requires is checked (a completed
QuestionnaireResponse of the required Questionnaire, about the patient, linked to the visit),
the Appointment set arrived, its Encounter created or reused as `$start-visit` does (class VR)
with status arrived and Encounter.location saying where the patient is (a site Location given
as `location`, else telefhir's "patient's home" Location of type v3-RoleCode PTRES, which
`$submit-claim` reads for the place of service), and a waiting-room pass issued for the
patient's page (heartbeat and the "clinician ready" event). Checking in again is harmless: the
same Appointment and Encounter, a fresh pass. Definition: operations/definitions/
OperationDefinition-Appointment-check-in.json."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.interactions.create import new_id
from fhir_server.principal import internal
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import now_us, parse_instant_us, to_instant
from fhir_server.writes import check_resource, store_resource
from operations.parameters import Params
from operations.registry import CANONICAL_BASE, OperationCall, operation
from operations.visits import waiting
from operations.visits.settings import VisitSettings, settings
from operations.visits.start_visit import find_encounter, people, visit_encounter, web_root
from operations.visits.virtual import is_virtual, visit_types
from resources import json_numbers

CHECKABLE = ("booked", "arrived", "checked-in")
INTAKE_DONE = ("completed", "amended")
LOCATION_SYSTEM = f"{CANONICAL_BASE}/location"
HOME = "patient-home"
PTRES = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "PTRES",
         "display": "patient's residence"}


def _refuse(status: int, message: str, expression: str | None = None) -> FhirError:
    return FhirError.of(status, "business-rule" if status == 422 else "conflict", message,
                        expression)


def required_intake(appointment: dict[str, Any], cfg: VisitSettings) -> str | None:
    """The canonical of the Questionnaire this visit type requires before check-in, if any
    (TELEFHIR_INTAKE_QUESTIONNAIRES; a visit type's own entry before the "*" default)."""
    types = set(visit_types(appointment))
    for key, canonical in cfg.intake:
        if key in types:
            return canonical
    return next((canonical for key, canonical in cfg.intake if key == "*"), None)


def same_canonical(value: str, wanted: str) -> bool:
    """`wanted` with a version (url|1.0) must match exactly; without, any version matches."""
    return value == wanted if "|" in wanted else value.split("|")[0] == wanted


def _ref(value: Any) -> str:
    return str(value.get("reference") or "") if isinstance(value, dict) else ""


def _intake_problem(qr: dict[str, Any] | None, ref: str, wanted: str, patient: str,
                    enc_ref: str | None) -> str | None:
    """Why `qr` does not satisfy the intake requirement, or None when it does."""
    if qr is None:
        return f"{ref} is not known"
    if qr.get("status") not in INTAKE_DONE:
        return f"{ref} is {qr.get('status')}, not completed"
    if not same_canonical(str(qr.get("questionnaire") or ""), wanted):
        return f"{ref} answers {qr.get('questionnaire') or 'no Questionnaire'}, not {wanted}"
    if _ref(qr.get("subject")) != patient:
        return f"{ref} is about {_ref(qr.get('subject')) or 'no one'}, not {patient}"
    other = _ref(qr.get("encounter"))
    if other and other != enc_ref:
        return f"{ref} belongs to {other}, another encounter"
    return None


def _read(tx: StoreTx, ref: str, res_type: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    if rtype != res_type or not rid or "/" in rid:
        return None
    stored = tx.read(rtype, rid)
    if stored is None or stored.deleted or stored.body is None:
        return None
    body: dict[str, Any] = json_numbers.loads(stored.body)
    return body


def check_intake(call: OperationCall, tx: StoreTx, appointment: dict[str, Any], wanted: str,
                 patient: str, enc_ref: str | None, given: str | None) -> str:
    """The reference of a QuestionnaireResponse that satisfies the intake requirement: the
    `questionnaireResponse` given, one the Appointment lists in supportingInformation, or one
    whose `encounter` is the visit's; else 422 saying what is missing."""
    candidates = [given] if given else []
    candidates += [_ref(s) for s in appointment.get("supportingInformation") or []
                   if _ref(s).startswith("QuestionnaireResponse/")]
    if enc_ref:
        found = call.ctx.search_engine.find_ids(tx, "QuestionnaireResponse",
                                                [("encounter", enc_ref)])
        candidates += [f"QuestionnaireResponse/{qid}" for _pk, qid in found]
    problems = []
    for ref in dict.fromkeys(candidates):
        problem = _intake_problem(_read(tx, ref, "QuestionnaireResponse"), ref, wanted,
                                  patient, enc_ref)
        if problem is None:
            return ref
        problems.append(problem)
    detail = "; ".join(problems) if problems else "none is linked to this visit (give it as " \
        "questionnaireResponse, list it in Appointment.supportingInformation, or set its " \
        "encounter)"
    raise _refuse(422, f"Check-in needs the intake form {wanted} completed by {patient}: "
                  f"{detail}", "Appointment.supportingInformation")


def home_location(call: OperationCall, tx: StoreTx) -> str:
    """telefhir's "patient's home" Location (mode kind: a class of locations, type PTRES),
    created on first use by the server itself (the internal principal telefhir-visits: a
    patient checking in may not create Locations, and this one is no patient's)."""
    query = [("identifier", f"{LOCATION_SYSTEM}|{HOME}")]
    found = call.ctx.search_engine.find_ids(tx, "Location", query)
    if not found:
        tx.lock("visit:home-location")
        found = call.ctx.search_engine.find_ids(tx, "Location", query)
    if found:
        return f"Location/{found[0][1]}"
    loc = {"resourceType": "Location", "status": "active", "mode": "kind",
           "name": "Patient's home", "identifier": [{"system": LOCATION_SYSTEM, "value": HOME}],
           "type": [{"coding": [PTRES]}],
           "description": "Where a patient joins a virtual visit from home (place of service "
                          "10 for Medicare)"}
    check_resource(loc, "Location")
    server = call.ctx.serving(replace(call.req, principal=internal("visits")))
    written = store_resource(server, tx, loc, new_id(), None, "POST")
    return f"Location/{written.res_id}"


def _site(tx: StoreTx, given: str | None) -> str | None:
    if not given:
        return None
    if _read(tx, given, "Location") is None:
        raise _refuse(422, f"The location {given} is not a known Location", "location")
    return given


def _with_location(enc: dict[str, Any], where: str, replace: bool) -> dict[str, Any]:
    have = [e for e in enc.get("location") or [] if isinstance(e, dict)]
    if have and not replace:
        return enc
    kept = [e for e in have if _ref(e.get("location")) != where]
    enc["location"] = [{"location": {"reference": where}, "status": "active"}, *[
        {**e, "status": "completed"} for e in kept]]
    return enc


@operation("OperationDefinition-Appointment-check-in", affects_state=True,
           needs=("Appointment.ru", "Encounter.cu", "QuestionnaireResponse.r"))
def check_in(call: OperationCall) -> Params:
    """Check the intake, set Appointment and Encounter arrived, issue a waiting-room pass."""
    cfg = settings()
    given_qr = _ref(call.params.get("questionnaireResponse")) or None
    given_loc = _ref(call.params.get("location")) or None
    with call.ctx.writing() as tx:
        stored = call.target(tx)
        assert stored.body is not None
        appointment = json_numbers.loads(stored.body)
        status = appointment.get("status")
        if status not in CHECKABLE:
            raise _refuse(409, f"The appointment is {status}: check-in is for a booked "
                          "appointment", "Appointment.status")
        if not is_virtual(appointment, cfg):
            raise _refuse(422, "The appointment is not a virtual visit (no virtualService "
                          "extension and no virtual visit type)", "Appointment")
        end = parse_instant_us(str(appointment.get("end", "")))
        if end is not None and end[1] < now_us():
            raise _refuse(422, f"The appointment ended at {appointment['end']}",
                          "Appointment.end")
        attendees = people(appointment)
        patient = next((ref for _, ref, _ in attendees if ref.startswith("Patient/")), None)
        if patient is None:
            raise _refuse(422, "The appointment has no Patient participant to check in",
                          "Appointment.participant")
        appt_ref = f"Appointment/{stored.res_id}"
        tx.lock(f"start-visit:{appt_ref}")  # the same key as $start-visit
        existing = find_encounter(call, tx, appt_ref)
        enc_ref = f"Encounter/{existing['id']}" if existing else None
        wanted = required_intake(appointment, cfg)
        intake = check_intake(call, tx, appointment, wanted, patient, enc_ref, given_qr) \
            if wanted else None
        site = _site(tx, given_loc)
        started = existing is not None and existing.get("status") == "in-progress"
        enc = visit_encounter(appointment, appt_ref, existing, attendees,
                              "in-progress" if started else "arrived")
        enc = _with_location(enc, site or home_location(call, tx), replace=site is not None)
        if existing is None:  # an update's statusHistory is the server's (status_history)
            enc["statusHistory"] = [{"status": "arrived",
                                     "period": {"start": to_instant(now_us())}}]
        if existing is None or enc != existing:
            check_resource(enc, "Encounter")
            before = tx.read("Encounter", existing["id"]) if existing else None
            written = store_resource(call.ctx, tx, enc, existing["id"] if existing else new_id(),
                                     before, "PUT" if existing else "POST")
            enc_ref = f"Encounter/{written.res_id}"
        assert enc_ref is not None
        changed = dict(appointment)
        if status == "booked":
            changed["status"] = "arrived"
        if intake and intake not in {_ref(s) for s in
                                     appointment.get("supportingInformation") or []}:
            changed["supportingInformation"] = [
                *(appointment.get("supportingInformation") or []), {"reference": intake}]
        if changed != appointment:
            check_resource(changed, "Appointment")
            store_resource(call.ctx, tx, changed, stored.res_id, stored, "PUT")
        secret = waiting.issue_pass(tx, stored.res_id, patient)
    root = web_root(call)
    out = Params().add("appointment", {"reference": appt_ref}).add(
        "encounter", {"reference": enc_ref})
    if intake:
        out.add("questionnaireResponse", {"reference": intake})
    return out.add("waitingRoom", f"{root}/visit/wait/{secret}")
