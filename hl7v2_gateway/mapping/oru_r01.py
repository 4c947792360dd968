"""ORU R01 unsolicited observation result: an Observation per OBX (value types NM, ST, TX, FT,
CE, CWE, CNE, SN, DT, TS, DTM, TM, RP), a DiagnosticReport per OBR with its results
(v2-to-FHIR IG ORU_R01, OBX[Observation], OBR[DiagnosticReport]).

Units go to UCUM where the unit is a UCUM code (or a common spelling of one); OBX-7
reference ranges become low/high quantities when they are `a-b`, `a to b`, `<a`, `>a`;
OBX-8 abnormal flags become the interpretation (table 0078 = v3 ObservationInterpretation);
OBX-11 gives Observation.status, OBR-25 DiagnosticReport.status."""

from __future__ import annotations

import re
from typing import Any

from hl7v2_gateway.datatypes import codeable, quantity
from hl7v2_gateway.er7 import Segment
from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import encounter, organization, patient, practitioner
from hl7v2_gateway.plan import identifier_key

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "preliminary",
              "I": "registered", "S": "preliminary", "X": "cancelled", "D": "entered-in-error",
              "W": "entered-in-error", "A": "amended", "U": "final", "N": "cancelled",
              "O": "registered"}
REPORT_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "A": "partial",
                 "I": "registered", "O": "registered", "R": "partial", "S": "partial",
                 "X": "cancelled", "Y": "registered", "Z": "registered"}
_FLAGS = {"L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "S", "R", "I", "B", "D", "U", "W",
          "HU", "LU", "IND", "NEG", "POS", "MS", "VS", "NR", "RR", "QCF", "TOX", "CAR", "DET",
          "ND", "E", "EX", "EXP", "HX", "LX", "IE", "NS", "SYN-R", "SYN-S", "SDD", "WR"}
_COMPARATORS = {"<", "<=", ">=", ">"}


def report_identifier(src: Source, obr: Segment) -> dict[str, Any] | None:
    """OBR-3 filler order number, else OBR-2 placer (ORC-3/ORC-2 before them)."""
    orc = next((s for s in reversed(src.msg.segments[:obr.index]) if s.name == "ORC"), None)
    for seg, n in ((obr, 3), (orc, 3), (obr, 2), (orc, 2)):
        if seg is not None:
            ident = src.m.entity_identifier(seg.rep(n))
            if ident:
                code = "FILL" if n == 3 else "PLAC"
                ident["type"] = {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]}
                return ident
    return None


def reference_range(text: str, unit: Any) -> dict[str, Any]:
    """OBX-7 as an Observation.referenceRange."""
    t = text.strip()
    num = r"[+-]?\d+(?:\.\d+)?"
    m = re.match(rf"^({num})\s*(?:-|to|\.\.)\s*({num})$", t)
    if m:
        return {"low": quantity(_num(m.group(1)), unit), "high": quantity(_num(m.group(2)),
                                                                           unit), "text": t}
    m = re.match(rf"^(<=?|>=?)\s*({num})$", t)
    if m:
        side = "high" if m.group(1).startswith("<") else "low"
        return {side: quantity(_num(m.group(2)), unit), "text": t}
    return {"text": t}


def _num(s: str) -> float | int:
    v = float(s)
    return int(v) if re.match(r"^[+-]?\d+$", s) else v


def observation_value(src: Source, obx: Segment) -> dict[str, Any]:
    """value[x] of one OBX from OBX-2 (value type), OBX-5 and OBX-6 (units)."""
    vtype = (obx.value(2) or "").upper()
    reps = [r for r in obx.reps(5) if not r.empty]
    if not reps:
        return {}
    if not vtype:
        raise obx.error(2, 101, "OBX-2 (value type) is required when OBX-5 is valued")
    unit = obx.rep(6) if not obx.rep(6).empty else None
    first = reps[0]
    m = src.m
    if vtype == "NM":
        value = m.number(obx, 5, first.text())
        return {"valueQuantity": quantity(value, unit)} if value is not None else {}
    if vtype in ("ST", "TX", "FT"):
        return {"valueString": "\n".join(t for r in reps if (t := r.text()))}
    if vtype in ("CE", "CWE", "CNE"):
        cc = codeable(first)
        return {"valueCodeableConcept": cc} if cc else {}
    if vtype == "SN":
        return _structured_numeric(src, obx, first, unit)
    if vtype in ("DT", "TS", "DTM"):
        when = m.time(obx, 5, first)
        return {"valueDateTime": when.fhir} if when else {}
    if vtype == "TM":
        text = first.c(1) or ""
        mt = re.match(r"^(\d{2})(\d{2})?(\d{2})?", text)
        if not mt:
            raise obx.error(5, 102, f"OBX-5 '{text}' is not a time (TM)")
        return {"valueTime": f"{mt.group(1)}:{mt.group(2) or '00'}:{mt.group(3) or '00'}"}
    if vtype in ("RP", "ID", "IS"):
        return {"valueString": first.c(1) or ""}
    src.plan.warnings.append(obx.error(2, 102, f"OBX-2 value type {vtype} is not mapped; "
                                                "the Observation has no value"))
    return {}


def _structured_numeric(src: Source, obx: Segment, rep: Any, unit: Any) -> dict[str, Any]:
    """SN: comparator^num1^separator/suffix^num2 (HL7 v2.5 2.A.73)."""
    comp, sep = rep.c(1), rep.c(3)
    n1 = src.m.number(obx, 5, rep.c(2))
    n2 = src.m.number(obx, 5, rep.c(4))
    if comp and comp not in _COMPARATORS and comp not in ("=", "<>"):
        raise obx.error(5, 102, f"OBX-5 SN comparator '{comp}' is not one of < <= > >= = <>")
    if sep in ("-", "+") or (sep is None and n2 is not None):
        if sep == "-" and n1 is not None and n2 is not None:
            return {"valueRange": {"low": quantity(n1, unit), "high": quantity(n2, unit)}}
    if sep in (":", "/") and n1 is not None and n2 is not None:
        return {"valueRatio": {"numerator": quantity(n1, None),
                               "denominator": quantity(n2, None)}}
    if n1 is None:
        return {}
    q = quantity(n1, unit)
    if comp in _COMPARATORS:
        q["comparator"] = comp
    return {"valueQuantity": q}


def interpretation(obx: Segment) -> list[dict[str, Any]]:
    out = []
    for r in obx.reps(8):
        code = r.c(1)
        if not code:
            continue
        c: dict[str, Any] = {"code": code}
        if code.upper() in _FLAGS:
            c = {"system": INTERPRETATION, "code": code.upper()}
        if r.c(2):
            c["display"] = r.c(2)
        out.append({"coding": [c]})
    return out


def observation(src: Source, obx: Segment, patient_key: str, enc_key: str | None,
                report_ident: dict[str, Any] | None, default_time: str | None,
                notes: list[str]) -> str:
    m = src.m
    code = codeable(obx.rep(3))
    if code is None:
        raise obx.error(3, 101, "OBX-3 (observation identifier) is required")
    ident = m.entity_identifier(obx.rep(21))
    if ident is None:
        base = (f"{report_ident.get('system', '')}|{report_ident['value']}"
                if report_ident else f"{src.msg.sender_key}|{src.msg.control_id}")
        ident = {"system": m.settings.default_system_base + "observation",
                 "value": f"{base}|{obx.value(1) or obx.sequence}|{obx.value(3) or ''}"
                          f"|{obx.value(4) or ''}"}
    status = OBS_STATUS.get((obx.value(11) or "F").upper())
    if status is None:
        raise obx.error(11, 103, f"OBX-11 '{obx.value(11)}' is not in table 0085")
    body: dict[str, Any] = {"identifier": [ident], "status": status, "code": code,
                            "subject": src.plan.ref(patient_key)}
    if enc_key:
        body["encounter"] = src.plan.ref(enc_key)
    body.update(observation_value(src, obx))
    effective = m.time(obx, 14)
    if effective or default_time:
        body["effectiveDateTime"] = effective.fhir if effective else default_time
    issued = m.time(obx, 19)
    if issued and issued.precision == "second":
        body["issued"] = issued.fhir
    ranges = obx.value(7)
    if ranges:
        unit = obx.rep(6) if not obx.rep(6).empty else None
        body["referenceRange"] = [reference_range(obx.rep(7).text() or ranges, unit)]
    interp = interpretation(obx)
    if interp:
        body["interpretation"] = interp
    method = codeable(obx.rep(17))
    if method:
        body["method"] = method
    performers = [src.plan.ref(k) for r in obx.reps(16) if (k := practitioner(src, r))]
    org = obx.rep(23)
    if not org.empty and org.c(1):
        ok = organization(src, org.c(1), src.m.identifier(org.comp(10))
                          if org.c(10) else None)
        if ok:
            performers.append(src.plan.ref(ok))
    if performers:
        body["performer"] = performers
    if notes:
        body["note"] = [{"text": n} for n in notes]
    key = identifier_key("Observation", ident)
    return src.plan.add(key, "Observation", body, ident)


def notes_after(src: Source, seg: Segment) -> list[str]:
    out = []
    for s in src.msg.after(seg):
        if s.name != "NTE":
            break
        text = "\n".join(t for r in s.reps(3) if (t := r.text()))
        if text:
            out.append(text)
    return out


@maps("ORU", "R01")
def oru(src: Source) -> None:
    pat = patient(src)
    enc = encounter(src, pat)
    obrs = src.msg.all("OBR")
    if not obrs:
        src.msg.require("OBR")
    for i, obr in enumerate(obrs):
        stop = obrs[i + 1].index if i + 1 < len(obrs) else len(src.msg.segments)
        obxs = [s for s in src.msg.segments[obr.index + 1:stop] if s.name == "OBX"]
        ident = report_identifier(src, obr)
        when = src.m.time(obr, 7)
        results = [observation(src, obx, pat, enc, ident, when.fhir if when else None,
                               notes_after(src, obx)) for obx in obxs]
        code = codeable(obr.rep(4))
        if code is None:
            raise obr.error(4, 101, "OBR-4 (universal service identifier) is required")
        if ident is None:
            ident = {"system": src.m.settings.default_system_base + "report",
                     "value": f"{src.msg.sender_key}|{src.msg.control_id}|{obr.sequence}"}
        status = REPORT_STATUS.get((obr.value(25) or "F").upper())
        if status is None:
            raise obr.error(25, 103, f"OBR-25 '{obr.value(25)}' is not in table 0123")
        body: dict[str, Any] = {"identifier": [ident], "status": status, "code": code,
                                "subject": src.plan.ref(pat),
                                "result": [src.plan.ref(k) for k in results]}
        if enc:
            body["encounter"] = src.plan.ref(enc)
        if when:
            body["effectiveDateTime"] = when.fhir
        issued = src.m.time(obr, 22)
        if issued and issued.precision == "second":
            body["issued"] = issued.fhir
        service = codeable(obr.rep(24), "0074")
        if service:
            body["category"] = [service]
        interpreters = [src.plan.ref(k) for r in obr.reps(32)
                        if (k := practitioner(src, r.comp(1)))]
        if interpreters:
            body["resultsInterpreter"] = interpreters
        src.plan.add(identifier_key("DiagnosticReport", ident), "DiagnosticReport", body,
                     ident)
