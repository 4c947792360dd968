"""FHIR to v2 for downstream systems: SIU S12/S13/S14/S15/S26 from an Appointment and ADT
A01/A04/A03 from an Encounter (the reverse of the inbound maps, v2-to-FHIR IG; HL7 v2.5
chapters 10 and 3)."""

from __future__ import annotations

from typing import Any

from hl7v2_gateway.ack import new_control_id
from hl7v2_gateway.er7 import DEFAULT_ENCODING
from hl7v2_gateway.settings import Endpoint, GatewaySettings
from hl7v2_gateway.timefmt import fhir_to_dtm, now_dtm

ENC = DEFAULT_ENCODING


def _e(text: Any) -> str:
    return ENC.escape_text(str(text)) if text not in (None, "") else ""


def _join(parts: list[str], sep: str) -> str:
    return sep.join(parts).rstrip(sep)


def appointment_event(before: dict[str, Any] | None, after: dict[str, Any]) -> str | None:
    """The SIU trigger event for an Appointment write (None: nothing a scheduler needs)."""
    status = after.get("status")
    if before is None:
        return "S15" if status == "cancelled" else "S12"
    if status == before.get("status") and after.get("start") == before.get("start") and \
            after.get("end") == before.get("end") and \
            after.get("participant") == before.get("participant"):
        return None
    if status != before.get("status"):
        if status == "cancelled":
            return "S15"
        if status == "noshow":
            return "S26"
    if after.get("start") != before.get("start") or after.get("end") != before.get("end"):
        return "S13"
    return "S14"


def encounter_event(before: dict[str, Any] | None, after: dict[str, Any]) -> str | None:
    """A01 (inpatient) / A04 (other) when an Encounter starts, A03 when it finishes."""
    status = after.get("status")
    was = before.get("status") if before else None
    if status == was:
        return None
    if status == "in-progress" and was in (None, "planned", "arrived", "triaged"):
        klass = (after.get("class") or {}).get("code")
        return "A01" if klass in ("IMP", "ACUTE", "NONAC") else "A04"
    if status == "finished":
        return "A03"
    return None


def msh(settings: GatewaySettings, ep: Endpoint, mtype: str, event: str, structure: str) -> str:
    return "|".join(["MSH", ENC.msh2, _e(settings.application), _e(settings.facility),
                     _e(ep.receiving_application), _e(ep.receiving_facility), now_dtm(), "",
                     f"{mtype}^{event}^{structure}", new_control_id(), "P", ep.version])


def pid(patient: dict[str, Any] | None, patient_ref: str | None) -> str:
    """PID from a Patient (identifiers with their systems as assigning authorities)."""
    p = patient or {}
    idents = []
    for ident in p.get("identifier") or []:
        code = next((c.get("code") for c in (ident.get("type") or {}).get("coding", [])), "")
        system = ident.get("system", "")
        authority = f"&{_e(system)}&URI" if system else ""
        idents.append(_join([_e(ident.get("value")), "", "", authority, _e(code)], "^"))
    if patient_ref:
        idents.append(f"{_e(patient_ref.split('/')[-1])}^^^telefhir^PI")
    names = []
    for n in p.get("name") or []:
        given = n.get("given") or []
        names.append(_join([_e(n.get("family")), _e(given[0] if given else ""),
                            _e(" ".join(given[1:]))], "^"))
    gender = {"male": "M", "female": "F", "other": "O", "unknown": "U"}.get(
        p.get("gender", ""), "")
    addrs = []
    for a in p.get("address") or []:
        lines = a.get("line") or []
        addrs.append(_join([_e(lines[0] if lines else ""), _e(" ".join(lines[1:])),
                            _e(a.get("city")), _e(a.get("state")), _e(a.get("postalCode")),
                            _e(a.get("country"))], "^"))
    fields = ["PID", "1", "", "~".join(idents), "", "~".join(names), "",
              fhir_to_dtm(p.get("birthDate")), gender, "", "", "~".join(addrs)]
    return _join(fields, "|")


def _ref_id(ref: dict[str, Any] | None) -> str:
    return str((ref or {}).get("reference", "")).split("/")[-1]


def siu(settings: GatewaySettings, ep: Endpoint, event: str, appt: dict[str, Any],
        patient: dict[str, Any] | None, patient_ref: str | None) -> str:
    filler = next((i.get("value") for i in appt.get("identifier") or []), appt["id"])
    status = {"booked": "Booked", "pending": "Pending", "cancelled": "Cancelled",
              "fulfilled": "Complete", "noshow": "Noshow", "arrived": "Started",
              "waitlist": "Waitlist", "proposed": "Pending",
              "entered-in-error": "Deleted"}.get(appt.get("status", ""), "")
    start, end = fhir_to_dtm(appt.get("start")), fhir_to_dtm(appt.get("end"))
    atype = appt.get("appointmentType") or {}
    code: dict[str, Any] = next(iter(atype.get("coding") or []), {})
    reason: dict[str, Any] = next(iter(appt.get("reasonCode") or []), {})
    rcode: dict[str, Any] = next(iter(reason.get("coding") or []), {})
    sch = ["SCH", _e(appt["id"]) + "^telefhir", _e(filler), "", "", "",
           "", _join([_e(rcode.get("code")), _e(rcode.get("display") or reason.get("text"))],
                     "^"),
           _join([_e(code.get("code")), _e(code.get("display") or atype.get("text"))], "^"),
           _e(appt.get("minutesDuration")), "min" if appt.get("minutesDuration") else "",
           f"^^^{start}^{end}" if start else "", "", "", "", "", "", "", "", "", "", "", "",
           "", "", status]
    segments = [msh(settings, ep, "SIU", event, "SIU_S12"), _join(sch, "|"),
                _join(["TQ1", "1", "", "", "", "", "", start, end], "|"),
                pid(patient, patient_ref), "RGS|1"]
    n_aip = n_ail = 0
    for part in appt.get("participant") or []:
        ref = (part.get("actor") or {}).get("reference", "")
        display = (part.get("actor") or {}).get("display", "")
        if ref.startswith("Practitioner/"):
            n_aip += 1
            segments.append(_join(["AIP", str(n_aip), "", f"{_e(_ref_id(part['actor']))}^"
                                   f"{_e(display)}"], "|"))
        elif ref.startswith("Location/"):
            n_ail += 1
            segments.append(_join(["AIL", str(n_ail), "", _e(display or _ref_id(
                part["actor"]))], "|"))
    return "\r".join(segments) + "\r"


def adt(settings: GatewaySettings, ep: Endpoint, event: str, enc: dict[str, Any],
        patient: dict[str, Any] | None, patient_ref: str | None) -> str:
    klass = (enc.get("class") or {}).get("code", "")
    pclass = {"IMP": "I", "EMER": "E", "AMB": "O", "PRENC": "P", "ACUTE": "I",
              "NONAC": "I", "VR": "O", "HH": "O"}.get(klass, "O")
    visit = next((i.get("value") for i in enc.get("identifier") or []), enc["id"])
    period = enc.get("period") or {}
    pv1 = ["PV1", "1", pclass] + [""] * 16 + [_e(visit)] + [""] * 24 + [
        fhir_to_dtm(period.get("start")), fhir_to_dtm(period.get("end"))]
    segments = [msh(settings, ep, "ADT", event, "ADT_A01" if event != "A03" else "ADT_A03"),
                f"EVN|{event}|{now_dtm()}", pid(patient, patient_ref), _join(pv1, "|")]
    return "\r".join(segments) + "\r"
