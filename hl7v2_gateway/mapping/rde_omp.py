"""RDE O11 (pharmacy encoded order) and OMP O09 (pharmacy order) to MedicationRequest, one per
ORC with its RXE or RXO, RXR routes and TQ1 timing (v2-to-FHIR IG RDE_O11, OMP_O09,
ORC[MedicationRequest], RXE[MedicationRequest], RXO[MedicationRequest])."""

from __future__ import annotations

from typing import Any

from hl7v2_gateway.datatypes import codeable, quantity
from hl7v2_gateway.er7 import Segment
from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import encounter, patient, practitioner
from hl7v2_gateway.plan import identifier_key

ORDER_CONTROL = {"NW": "active", "OK": "active", "RL": "active", "XO": "active",
                 "RP": "active", "SN": "active", "CA": "cancelled", "OC": "cancelled",
                 "CR": "cancelled", "DC": "stopped", "OD": "stopped", "DR": "stopped",
                 "HD": "on-hold", "OH": "on-hold"}
ORDER_STATUS = {"CM": "completed", "IP": "active", "SC": "active", "A": "active",
                "CA": "cancelled", "DC": "stopped", "HD": "on-hold", "ER": "entered-in-error"}


def _group(src: Source, orc: Segment, names: tuple[str, ...]) -> list[Segment]:
    out = []
    for s in src.msg.after(orc):
        if s.name == "ORC":
            break
        if s.name in names:
            out.append(s)
    return out


def medication_request(src: Source, orc: Segment, pat: str, enc: str | None) -> str | None:
    m = src.m
    segs = _group(src, orc, ("RXE", "RXO", "RXR", "TQ1"))
    wanted = ("RXE", "RXO") if src.msg.message_type == "RDE" else ("RXO",)
    rx = next((s for name in wanted for s in segs if s.name == name), None)
    if rx is None:
        return None
    rxe = rx.name == "RXE"
    # RXE-2 give code, -3/-4 amount, -5 units, -6 form, -7 instructions;
    # RXO-1 requested give code, -2/-3 amount, -4 units, -5 form, -6 instructions
    code_n, amount_n, units_n, form_n, instr_n = (2, 3, 5, 6, 7) if rxe else (1, 2, 4, 5, 6)
    medication = codeable(rx.rep(code_n))
    if medication is None:
        raise rx.error(code_n, 101, f"{rx.name}-{code_n} (give code) is required")
    ident = None
    for n, code in ((2, "PLAC"), (3, "FILL")):
        ident = m.entity_identifier(orc.rep(n))
        if ident:
            ident["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                   "v2-0203", "code": code}]}
            break
    if ident is None:
        raise orc.error(2, 101, "ORC-2 (placer order number) or ORC-3 (filler) is required")
    control = (orc.value(1) or "NW").upper()
    status = ORDER_STATUS.get((orc.value(5) or "").upper()) or ORDER_CONTROL.get(control)
    if status is None:
        raise orc.error(1, 103, f"ORC-1 order control '{control}' is not in table 0119")
    body: dict[str, Any] = {"identifier": [ident], "status": status, "intent": "order",
                            "medicationCodeableConcept": medication,
                            "subject": src.plan.ref(pat)}
    if enc:
        body["encounter"] = src.plan.ref(enc)
    authored = m.time(orc, 9)
    if authored:
        body["authoredOn"] = authored.fhir
    requester = next((k for r in orc.reps(12) if (k := practitioner(src, r))), None)
    if requester is None and rxe:
        requester = next((k for r in rx.reps(13) if (k := practitioner(src, r))), None)
    if requester:
        body["requester"] = src.plan.ref(requester)
    dosage: dict[str, Any] = {}
    texts = [t for r in rx.reps(instr_n) if (t := r.c(2) or r.c(1))]
    if texts:
        dosage["text"] = "; ".join(texts)
    routes = [c for s in segs if s.name == "RXR" if (c := codeable(s.rep(1), "0162"))]
    if routes:
        dosage["route"] = routes[0]
    amount = m.number(rx, amount_n, rx.value(amount_n))
    if amount is not None:
        unit = rx.rep(units_n) if not rx.rep(units_n).empty else None
        dosage["doseAndRate"] = [{"doseQuantity": quantity(amount, unit)}]
    tq1 = next((s for s in segs if s.name == "TQ1"), None)
    if tq1 is not None:
        start, end = m.time(tq1, 7), m.time(tq1, 8)
        if start or end:
            dosage["timing"] = {"repeat": {"boundsPeriod": {
                k: v.fhir for k, v in (("start", start), ("end", end)) if v}}}
    if dosage:
        body["dosageInstruction"] = [dosage]
    form = codeable(rx.rep(form_n))
    if form:
        body["note"] = [{"text": "Dosage form: " + (form.get("text") or next(
            (c.get("display") or c.get("code") for c in form.get("coding", [])), ""))}]
    if rxe:
        dispense: dict[str, Any] = {}
        qty = m.number(rx, 10, rx.value(10))
        if qty is not None:
            dispense["quantity"] = quantity(qty, rx.rep(11) if not rx.rep(11).empty else None)
        refills = m.number(rx, 12, rx.value(12))
        if refills is not None:
            dispense["numberOfRepeatsAllowed"] = int(refills)
        if dispense:
            body["dispenseRequest"] = dispense
    return src.plan.add(identifier_key("MedicationRequest", ident), "MedicationRequest", body,
                        ident)


def _orders(src: Source) -> None:
    pat = patient(src)
    enc = encounter(src, pat)
    orcs = src.msg.all("ORC")
    if not orcs:
        src.msg.require("ORC")
    written = [k for orc in orcs if (k := medication_request(src, orc, pat, enc))]
    if not written:
        kind = "RXE" if src.msg.message_type == "RDE" else "RXO"
        src.msg.require(kind)
        raise orcs[0].error(None, 100, f"No ORC is followed by an {kind} segment")


@maps("RDE", "O11")
def rde(src: Source) -> None:
    _orders(src)


@maps("OMP", "O09")
def omp(src: Source) -> None:
    _orders(src)
