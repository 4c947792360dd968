"""Segment maps shared by the message maps (v2-to-FHIR IG segment maps): PID[Patient],
PD1, PV1/PV2[Encounter], NK1[RelatedPerson], IN1[Coverage], XCN[Practitioner],
PL[Location], and the message time used to order updates.

Each function plans its resources in `src.plan` and returns the plan key of the main one.
A field sent as `""` clears the FHIR element it maps to; an empty field leaves it alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hl7v2_gateway.datatypes import V2_TABLE, codeable
from hl7v2_gateway.er7 import Rep, Segment
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.mapping import Source
from hl7v2_gateway.plan import Plan, identifier_key

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def put(body: dict[str, Any], clear: set[str], seg: Segment, n: int, key: str,
        value: Any) -> None:
    """Set `key` from field n: `""` clears it, a value sets it, empty leaves it."""
    if seg.is_null(n):
        clear.add(key)
    elif value not in (None, [], {}):
        body[key] = value


def message_time(src: Source) -> int | None:
    """When the message's event happened, for ordering: EVN-2 (recorded), else MSH-7."""
    evn = src.msg.first("EVN")
    t = src.m.time(evn, 2) if evn is not None else None
    if t is None:
        t = src.m.time(src.msg.msh, 7)
    return t.utc_us if t is not None and t.moment is not None else None


# -- Patient -----------------------------------------------------------------------------

_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other",
           "N": "other"}
_MARITAL = {"A", "D", "I", "L", "M", "P", "S", "T", "U", "W"}


def patient_identifiers(src: Source, pid: Segment) -> list[dict[str, Any]]:
    out = []
    for n in (3, 2, 4):  # PID-3 patient identifier list; PID-2/PID-4 (before v2.7)
        for rep in pid.reps(n):
            ident = src.m.identifier(rep)
            if ident and ident not in out:
                out.append(ident)
    return out


def patient(src: Source, pid: Segment | None = None) -> str:
    """PID[Patient] (+ PD1); the key of the Patient. 101 if PID-3 has no identifier."""
    pid = pid or src.msg.require("PID")
    m = src.m
    idents = patient_identifiers(src, pid)
    if not idents:
        raise pid.error(3, 101, "PID-3 (patient identifier list) is required")
    main = next((i for i in idents if _type_code(i) == "MR"), idents[0])
    body: dict[str, Any] = {"identifier": idents}
    clear: set[str] = set()
    put(body, clear, pid, 5, "name", [n for r in pid.reps(5) if (n := m.human_name(r))])
    birth = m.time(pid, 7)
    put(body, clear, pid, 7, "birthDate", birth.fhir[:10] if birth else None)
    gender = (pid.value(8) or "").upper()
    if gender and gender not in _GENDER:
        raise pid.error(8, 103, f"PID-8 '{gender}' is not in table 0001 (F M O U A N)")
    put(body, clear, pid, 8, "gender", _GENDER.get(gender))
    put(body, clear, pid, 11, "address", [a for r in pid.reps(11) if (a := m.address(r))])
    telecom = [t for r in pid.reps(13) if (t := m.contact_point(r, "home"))]
    telecom += [t for r in pid.reps(14) if (t := m.contact_point(r, "work"))]
    if pid.is_null(13) and pid.is_null(14):
        clear.add("telecom")
    elif telecom:
        body["telecom"] = telecom
    lang = codeable(pid.rep(15), "0296")
    put(body, clear, pid, 15, "communication", [{"language": lang}] if lang else None)
    marital = (pid.value(16) or "").upper()
    if marital:
        system = ("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
                  if marital in _MARITAL else f"{V2_TABLE}0002")
        body["maritalStatus"] = {"coding": [{"system": system, "code": marital,
                                             **({"display": pid.value(16, 2)}
                                                if pid.value(16, 2) else {})}]}
    elif pid.is_null(16):
        clear.add("maritalStatus")
    mb = (pid.value(24) or "").upper()
    order = m.number(pid, 25, pid.value(25))
    if order is not None:
        body["multipleBirthInteger"] = int(order)
    elif mb in ("Y", "N"):
        body["multipleBirthBoolean"] = mb == "Y"
    death = m.time(pid, 29)
    dead = (pid.value(30) or "").upper()
    if death is not None:
        body["deceasedDateTime"] = death.fhir
    elif dead in ("Y", "N"):
        body["deceasedBoolean"] = dead == "Y"
    pd1 = src.msg.first("PD1")
    if pd1 is not None:
        gps = [src.plan.ref(k) for r in pd1.reps(4) if (k := practitioner(src, r))]
        put(body, clear, pd1, 4, "generalPractitioner", gps)
    body["active"] = True
    key = identifier_key("Patient", main)
    src.plan.add(key, "Patient", body, main, clear)
    return key


def _type_code(ident: dict[str, Any]) -> str | None:
    for c in (ident.get("type") or {}).get("coding", []):
        return str(c.get("code"))
    return None


def patient_ref(src: Source) -> str:
    """The Patient of the message (planned once, shared by every resource)."""
    for key, p in src.plan.items.items():
        if p.res_type == "Patient" and not key.startswith("merged:"):
            return key
    return patient(src)


# -- Practitioner, Organization, Location --------------------------------------------------

def practitioner(src: Source, rep: Rep) -> str | None:
    """XCN[Practitioner]; its key, or None for an empty field."""
    found = src.m.practitioner(rep)
    if found is None:
        return None
    ident, body = found
    if ident is None:
        return None  # a name without an id: not a resource we can match again
    key = identifier_key("Practitioner", ident)
    return src.plan.add(key, "Practitioner", body, ident)


def organization(src: Source, name: str | None, ident: dict[str, Any] | None) -> str | None:
    """An Organization by identifier (or by name, under the default system)."""
    if ident is None:
        if not name:
            return None
        ident = {"system": src.m.settings.default_system_base + "organization",
                 "value": name}
    body: dict[str, Any] = {"identifier": [ident], "active": True}
    if name:
        body["name"] = name
    key = identifier_key("Organization", ident)
    return src.plan.add(key, "Organization", body, ident)


_PL_TYPES = [(3, "bd", "Bed"), (2, "ro", "Room"), (1, "wa", "Ward"), (7, "bu", "Building")]


def location(src: Source, rep: Rep) -> str | None:
    """PL[Location]: the most specific level named (bed, room, point of care, building), its
    identifier the levels joined, its physicalType the level."""
    if rep.empty or rep.is_null:
        return None
    levels = [rep.s(1, 1), rep.c(2), rep.c(3), rep.comp(4).c(1), rep.c(7), rep.c(8)]
    if not any(levels):
        return None
    value = "^".join(x or "" for x in levels).rstrip("^")
    ident = {"system": src.m.settings.default_system_base + "location", "value": value}
    name = ", ".join(x for x in (rep.s(1, 1), rep.c(2), rep.c(3)) if x) \
        or rep.comp(4).c(1) or value
    body: dict[str, Any] = {"identifier": [ident], "name": name, "status": "active",
                            "mode": "instance"}
    for comp, code, display in _PL_TYPES:
        if (rep.c(comp) if comp != 1 else rep.s(1, 1)):
            body["physicalType"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                "code": code, "display": display}]}
            break
    if rep.c(9):
        body["description"] = rep.c(9)
    key = identifier_key("Location", ident)
    return src.plan.add(key, "Location", body, ident)


# -- Encounter ----------------------------------------------------------------------------

_CLASS = {"E": ("EMER", "emergency"), "I": ("IMP", "inpatient encounter"),
          "O": ("AMB", "ambulatory"), "P": ("PRENC", "pre-admission"),
          "R": ("AMB", "ambulatory"), "B": ("IMP", "inpatient encounter"),
          "C": ("AMB", "ambulatory"), "N": ("AMB", "ambulatory"), "U": ("AMB", "ambulatory")}
_PARTICIPANTS = [(7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"),
                 (17, "ADM", "admitter")]


def encounter_identifier(src: Source, pv1: Segment) -> dict[str, Any] | None:
    """PV1-19 visit number, else PID-18 account number (CX)."""
    ident = src.m.identifier(pv1.rep(19))
    if ident is None:
        pid = src.msg.first("PID")
        if pid is not None:
            ident = src.m.identifier(pid.rep(18))
    if ident is not None and "type" not in ident:
        ident["type"] = {"coding": [{"system": f"{V2_TABLE}0203", "code": "VN"}]}
    return ident


def encounter(src: Source, patient_key: str, status: str | None = None,
              class_override: str | None = None, pv1: Segment | None = None) -> str | None:
    """PV1/PV2[Encounter]; its key, or None when the message names no visit (no PV1, or no
    visit/account number to find it again)."""
    pv1 = pv1 or src.msg.first("PV1")
    if pv1 is None:
        return None
    m = src.m
    ident = encounter_identifier(src, pv1)
    if ident is None:
        src.plan.warnings.append(pv1.error(19, 101, "PV1-19 (visit number) is empty: no "
                                                     "Encounter was recorded"))
        return None
    body: dict[str, Any] = {"identifier": [ident], "subject": src.plan.ref(patient_key)}
    clear: set[str] = set()
    pclass = (pv1.value(2) or "").upper()
    code = class_override or (_CLASS.get(pclass, ("AMB", "ambulatory"))[0] if pclass else None)
    if code:
        display = {v[0]: v[1] for v in _CLASS.values()}.get(code, code)
        body["class"] = {"system": V3_ACT, "code": code, "display": display}
    else:
        body["class"] = {"system": V3_ACT, "code": "AMB", "display": "ambulatory"}
    if status:
        body["status"] = status
    else:
        body["status"] = "finished" if pv1.value(45) else "in-progress"
    start = m.time(pv1, 44)
    end = m.time(pv1, 45)
    if start or end:
        body["period"] = {k: v.fhir for k, v in (("start", start), ("end", end)) if v}
    elif pv1.is_null(44):
        clear.add("period")
    participants = []
    for n, code, display in _PARTICIPANTS:
        for rep in pv1.reps(n):
            k = practitioner(src, rep)
            if k:
                participants.append({"type": [{"coding": [{"system": V3_PARTICIPATION,
                                                            "code": code,
                                                            "display": display}]}],
                                     "individual": src.plan.ref(k)})
    if participants:
        body["participant"] = participants
    locs = []
    loc = location(src, pv1.rep(3))
    if loc:
        locs.append({"location": src.plan.ref(loc),
                     "status": "completed" if body["status"] == "finished" else "active"})
    prior = location(src, pv1.rep(6))
    if prior and prior != loc:
        locs.append({"location": src.plan.ref(prior), "status": "completed"})
    put(body, clear, pv1, 3, "location", locs)
    service = codeable(pv1.rep(10), "0069")
    put(body, clear, pv1, 10, "serviceType", service)
    hosp: dict[str, Any] = {}
    admit = codeable(pv1.rep(14), "0023")
    if admit:
        hosp["admitSource"] = admit
    readmit = codeable(pv1.rep(13), "0092")
    if readmit:
        hosp["reAdmission"] = readmit
    dispo = codeable(pv1.rep(36), "0112")
    if dispo:
        hosp["dischargeDisposition"] = dispo
    if hosp:
        body["hospitalization"] = hosp
    pv2 = src.msg.first("PV2")
    if pv2 is not None:
        reason = codeable(pv2.rep(3))
        put(body, clear, pv2, 3, "reasonCode", [reason] if reason else None)
    key = identifier_key("Encounter", ident)
    src.plan.add(key, "Encounter", body, ident, clear)
    return key


# -- RelatedPerson, Coverage -----------------------------------------------------------------

def _derived(src: Source, kind: str, patient_key: str, n: str) -> dict[str, Any]:
    """An identifier for a resource v2 gives none: the patient's identifier and a set id."""
    p = src.plan.items[patient_key]
    assert p.ident is not None
    return {"system": src.m.settings.default_system_base + kind,
            "value": f"{p.ident.get('system', '')}|{p.ident['value']}|{n}"}


def related_persons(src: Source, patient_key: str) -> list[str]:
    """NK1[RelatedPerson], one per NK1 segment."""
    out = []
    m = src.m
    for nk1 in src.msg.all("NK1"):
        names = [n for r in nk1.reps(2) if (n := m.human_name(r))]
        if not names and not nk1.value(30):
            continue
        ident = m.identifier(nk1.rep(33)) or _derived(
            src, "related-person", patient_key, nk1.value(1) or str(nk1.sequence))
        body: dict[str, Any] = {"identifier": [ident], "patient": src.plan.ref(patient_key),
                                "active": True}
        clear: set[str] = set()
        if not names:
            names = [n for r in nk1.reps(30) if (n := m.human_name(r))]
        body["name"] = names
        rel = codeable(nk1.rep(3), "0063")
        put(body, clear, nk1, 3, "relationship", [rel] if rel else None)
        put(body, clear, nk1, 4, "address", [a for r in nk1.reps(4) if (a := m.address(r))])
        telecom = [t for r in nk1.reps(5) if (t := m.contact_point(r, "home"))]
        telecom += [t for r in nk1.reps(6) if (t := m.contact_point(r, "work"))]
        if telecom:
            body["telecom"] = telecom
        gender = (nk1.value(15) or "").upper()
        if gender in _GENDER:
            body["gender"] = _GENDER[gender]
        birth = m.time(nk1, 16)
        if birth:
            body["birthDate"] = birth.fhir[:10]
        start, end = m.time(nk1, 8), m.time(nk1, 9)
        if start or end:
            body["period"] = {k: v.fhir for k, v in (("start", start), ("end", end)) if v}
        key = identifier_key("RelatedPerson", ident)
        out.append(src.plan.add(key, "RelatedPerson", body, ident, clear))
    return out


_SUBSCRIBER = {"SEL": "self", "SPO": "spouse", "CHD": "child", "PAR": "parent",
               "EME": "other", "OTH": "other", "DOM": "common", "FND": "other"}


def coverages(src: Source, patient_key: str) -> list[str]:
    """IN1[Coverage] (+ the payor Organization from IN1-3/IN1-4)."""
    out = []
    m = src.m
    for in1 in src.msg.all("IN1"):
        company_id = m.identifier(in1.rep(3))
        company_name = in1.rep(4).text()
        payor = organization(src, company_name.split(src.msg.enc.component)[0]
                             if company_name else None, company_id)
        if payor is None:
            src.plan.warnings.append(in1.error(3, 101, "IN1-3/IN1-4 (insurance company) are "
                                                       "empty: no Coverage was recorded"))
            continue
        policy = in1.value(36)
        ident = ({"system": src.m.settings.default_system_base + "policy", "value": policy}
                 if policy else _derived(src, "coverage", patient_key,
                                         in1.value(1) or str(in1.sequence)))
        body: dict[str, Any] = {"identifier": [ident], "status": "active",
                                "beneficiary": src.plan.ref(patient_key),
                                "payor": [src.plan.ref(payor)]}
        if policy:
            body["subscriberId"] = policy
        plan_type = codeable(in1.rep(15), "0086")
        if plan_type:
            body["type"] = plan_type
        start, end = m.time(in1, 12), m.time(in1, 13)
        if start or end:
            body["period"] = {k: v.fhir for k, v in (("start", start), ("end", end)) if v}
        rel = (in1.value(17) or "").upper()
        if rel:
            code = _SUBSCRIBER.get(rel, "other")
            body["relationship"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                "code": code}]}
            if code == "self":
                body["subscriber"] = src.plan.ref(patient_key)
        if in1.value(2):
            body["class"] = [{"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                "code": "plan"}]}, "value": in1.value(2),
                **({"name": in1.value(2, 2)} if in1.value(2, 2) else {})}]
        key = identifier_key("Coverage", ident)
        out.append(src.plan.add(key, "Coverage", body, ident))
    return out


def observations(src: Source, patient_key: str, enc_key: str | None) -> list[str]:
    """OBX segments of a non-result message (ADT, SIU) as Observations of the patient (the
    IG's ADT_A01 and SIU_S12 maps), keyed by the message's sender and control id."""
    from hl7v2_gateway.mapping.oru_r01 import notes_after, observation

    return [observation(src, obx, patient_key, enc_key, None, None, notes_after(src, obx))
            for obx in src.msg.all("OBX")]


def reference_to(plan: Plan, key: str | None) -> dict[str, Any] | None:
    return plan.ref(key) if key else None


def quoted(text: str) -> str:
    return quote(text, safe="")


__all__ = ["Hl7Error", "coverages", "encounter", "location", "message_time", "organization",
           "patient", "practitioner", "put", "related_persons"]
