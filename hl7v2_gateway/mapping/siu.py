"""SIU S12 S13 S14 S15 S26 (new, rescheduled, modified, cancelled, no-show appointment) to
Appointment, its Slot (in a Schedule of the first resource booked) and participants: the
Patient (PID), Practitioners (AIP), Locations (AIL) and the service (AIS)
(v2-to-FHIR IG SIU_S12 and SCH[Appointment]; https://hl7.org/fhir/R4/appointment.html)."""

from __future__ import annotations

from typing import Any

from hl7v2_gateway.datatypes import codeable
from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import location, observations, patient, practitioner
from hl7v2_gateway.plan import identifier_key
from hl7v2_gateway.timefmt import V2Time

EVENT_STATUS = {"S12": "booked", "S13": "booked", "S14": None, "S15": "cancelled",
                "S26": "noshow"}
FILLER_STATUS = {"BOOKED": "booked", "PENDING": "pending", "CANCELLED": "cancelled",
                 "COMPLETE": "fulfilled", "NOSHOW": "noshow", "STARTED": "arrived",
                 "OVERBOOK": "booked", "DELETED": "entered-in-error", "BLOCKED": "booked",
                 "WAITLIST": "waitlist", "DC": "cancelled"}


def _times(src: Source) -> tuple[V2Time | None, V2Time | None]:
    m = src.m
    tq1 = src.msg.first("TQ1")
    if tq1 is not None and (tq1.value(7) or tq1.value(8)):
        return m.time(tq1, 7), m.time(tq1, 8)
    sch = src.msg.require("SCH")
    rep = sch.rep(11)
    if rep.c(4) or rep.c(5):
        return m.time(sch, 11, rep, 4), m.time(sch, 11, rep, 5)
    for ais in src.msg.all("AIS") + src.msg.all("AIP") + src.msg.all("AIL"):
        start = m.time(ais, 6)
        if start:
            return start, None
    return None, None


@maps("SIU", *EVENT_STATUS)
def siu(src: Source) -> None:
    m = src.m
    sch = src.msg.require("SCH")
    idents = []
    for n, code in ((2, "FILL"), (1, "PLAC")):
        ident = m.entity_identifier(sch.rep(n))
        if ident:
            ident["type"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]}
            idents.append(ident)
    if not idents:
        raise sch.error(2, 101, "SCH-2 (filler appointment id) or SCH-1 (placer) is required")
    main = idents[0]
    pat = patient(src)
    status = EVENT_STATUS[src.event]
    filler = (sch.value(25) or "").upper()
    if filler and src.event in ("S12", "S13", "S14"):
        status = FILLER_STATUS.get(filler, status)
    status = status or "booked"
    start, end = _times(src)
    body: dict[str, Any] = {"identifier": idents, "status": status}
    if start:
        body["start"] = _instant(start)
    if end:
        body["end"] = _instant(end)
    if start is None and status not in ("proposed", "cancelled", "waitlist", "noshow",
                                        "entered-in-error"):
        raise sch.error(11, 101, "The appointment has no start time (TQ1-7 or SCH-11.4)")
    duration = m.number(sch, 9, sch.value(9))
    units = (sch.value(10) or "min").lower()
    if duration is not None:
        factor = {"s": 1 / 60, "sec": 1 / 60, "min": 1, "h": 60, "hr": 60, "hrs": 60}.get(
            units, 1)
        body["minutesDuration"] = max(1, int(round(duration * factor)))
    reason = codeable(sch.rep(7))
    if reason:
        body["reasonCode"] = [reason]
    atype = codeable(sch.rep(8), "0276")
    if atype:
        body["appointmentType"] = atype
    if src.event in ("S15", "S26"):
        why = codeable(sch.rep(6))
        if why and src.event == "S15":
            body["cancelationReason"] = why
    participants: list[dict[str, Any]] = [{"actor": src.plan.ref(pat), "status": "accepted",
                                           "required": "required"}]
    schedule_actor: str | None = None
    for aip in src.msg.all("AIP"):
        k = practitioner(src, aip.rep(3))
        if k:
            schedule_actor = schedule_actor or k
            part: dict[str, Any] = {"actor": src.plan.ref(k), "status": "accepted"}
            role = codeable(aip.rep(4))
            if role:
                part["type"] = [role]
            participants.append(part)
    for ail in src.msg.all("AIL"):
        k = location(src, ail.rep(3))
        if k:
            schedule_actor = schedule_actor or k
            participants.append({"actor": src.plan.ref(k), "status": "accepted"})
    services = [c for ais in src.msg.all("AIS") if (c := codeable(ais.rep(3)))]
    if services:
        body["serviceType"] = services
    body["participant"] = participants
    comments = [t for nte in src.msg.all("NTE") for r in nte.reps(3) if (t := r.text())]
    if comments:
        body["comment"] = "\n".join(comments)
    if schedule_actor and start:
        body["slot"] = [src.plan.ref(_slot(src, main, schedule_actor, start, end, status))]
    src.plan.add(identifier_key("Appointment", main), "Appointment", body, main)
    observations(src, pat, None)


def _instant(t: V2Time) -> str:
    """Appointment.start/end are instants: a date-only time is taken as its start."""
    if t.precision == "second":
        return t.fhir
    assert t.moment is not None
    return t.moment.isoformat()


def _slot(src: Source, appt: dict[str, Any], actor: str, start: V2Time, end: V2Time | None,
          status: str) -> str:
    base = src.m.settings.default_system_base
    actor_ident = src.plan.items[actor].ident or {"value": actor}
    sched_ident = {"system": base + "schedule",
                   "value": f"{actor_ident.get('system', '')}|{actor_ident['value']}"}
    sched = src.plan.add(identifier_key("Schedule", sched_ident), "Schedule", {
        "identifier": [sched_ident], "active": True, "actor": [src.plan.ref(actor)]},
        sched_ident, update=False)
    slot_ident = {"system": base + "slot",
                  "value": f"{appt.get('system', '')}|{appt['value']}"}
    free = status in ("cancelled", "noshow", "entered-in-error")
    body: dict[str, Any] = {"identifier": [slot_ident], "schedule": src.plan.ref(sched),
                            "status": "free" if free else "busy", "start": _instant(start),
                            "end": _instant(end or start)}
    return src.plan.add(identifier_key("Slot", slot_ident), "Slot", body, slot_ident)
