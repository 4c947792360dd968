"""ADT A01 A02 A03 A04 A05 A06 A07 A08 A11 A13 A28 A31: Patient, Encounter and what they
reference (Practitioner, Location, Organization), RelatedPerson from NK1, Coverage from IN1
(v2-to-FHIR IG message maps ADT_A01, ADT_A02, ADT_A03, ADT_A05, ADT_A09...).

One row of EVENTS per trigger event says what it does to the Encounter: its status (the IG's
ConceptMap table-hl70003-to-encounter-status where it has the event; None keeps what PV1 says)
and class (A06/A07 change it); A28/A31 are person-only (no Encounter)."""

from __future__ import annotations

from dataclasses import dataclass

from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import (
    coverages,
    encounter,
    observations,
    patient,
    related_persons,
)


@dataclass(frozen=True)
class AdtEvent:
    status: str | None  # Encounter.status, None: from PV1 (finished when PV1-45 is valued)
    encounter: bool = True
    klass: str | None = None  # Encounter.class override (v3 ActCode)


EVENTS = {
    "A01": AdtEvent("in-progress"),  # admit/visit notification
    "A02": AdtEvent("in-progress"),  # transfer: PV1-3 new, PV1-6 prior location
    "A03": AdtEvent("finished"),  # discharge/end visit
    "A04": AdtEvent("planned"),  # register a patient (the IG ConceptMap table 0003 -> status)
    "A05": AdtEvent("planned"),  # pre-admit
    "A06": AdtEvent("in-progress", klass="IMP"),  # outpatient -> inpatient
    "A07": AdtEvent("in-progress", klass="AMB"),  # inpatient -> outpatient
    "A08": AdtEvent(None),  # update patient information
    "A11": AdtEvent("cancelled"),  # cancel admit/visit
    "A13": AdtEvent("in-progress"),  # cancel discharge
    "A28": AdtEvent(None, encounter=False),  # add person information
    "A31": AdtEvent(None, encounter=False),  # update person information
}


@maps("ADT", *EVENTS)
def adt(src: Source) -> None:
    ev = EVENTS[src.event]
    pat = patient(src)
    related_persons(src, pat)
    enc = None
    if ev.encounter:
        enc = encounter(src, pat, ev.status, ev.klass)
        if enc is not None and src.event == "A13":  # the discharge is undone: no period.end
            period = src.plan.items[enc].body.get("period")
            if isinstance(period, dict):
                period.pop("end", None)
    observations(src, pat, enc)
    coverages(src, pat)
