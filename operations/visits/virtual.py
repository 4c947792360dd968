"""What makes an Appointment or Encounter a virtual (telehealth) visit in telefhir's FHIR model.

- The R5 cross-version extension `extension-Appointment.virtualService` /
  `extension-Encounter.virtualService` (https://hl7.org/fhir/extensions/xver.html): R5's
  VirtualServiceDetail folded into nested extensions named after its elements (channelType,
  addressUrl, maxParticipants, sessionKey, ...). Any Appointment carrying it is virtual, in
  either form (nested extensions, or a plain value) and with any channel type; telefhir's own
  channel types are the codes of CHANNEL_SYSTEM below.
- An Encounter of a virtual visit has class `v3-ActCode|VR` (virtual).
- Visit types coded in Appointment.appointmentType or serviceType (Epic-style) count as virtual
  when listed in the settings (TELEFHIR_VIRTUAL_VISIT_TYPES)."""

from __future__ import annotations

from typing import Any

from operations.registry import CANONICAL_BASE
from operations.visits.settings import VisitSettings

APPOINTMENT_VIRTUAL = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService")
ENCOUNTER_VIRTUAL = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.virtualService")
CHANNEL_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/virtual-service-channel"
"""telefhir's channel types: audio-video (the video visit), audio-only, store-and-forward
(the same codes as $submit-claim's `modality`)."""
CHANNELS = {"audio-video": "Audio and video", "audio-only": "Audio only",
            "store-and-forward": "Store and forward"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VIRTUAL_CLASS = {"system": ACT_CODE, "code": "VR", "display": "virtual"}


def virtual_service(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The virtualService extension of an Appointment or Encounter, if any."""
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") in (APPOINTMENT_VIRTUAL, ENCOUNTER_VIRTUAL):
            return ext
    return None


def channel_code(resource: dict[str, Any]) -> str | None:
    """The telefhir channel type of a virtual visit (audio-video, audio-only, ...), or None
    when it has no virtualService or another system's channel type."""
    ext = virtual_service(resource)
    if ext is None:
        return None
    codings = [ext.get("valueCoding")]
    codings += [e.get("valueCoding") for e in ext.get("extension") or []
                if isinstance(e, dict) and e.get("url") == "channelType"]
    for c in codings:
        if isinstance(c, dict) and c.get("system") == CHANNEL_SYSTEM and c.get("code"):
            return str(c["code"])
    return None


def _codings(concepts: Any) -> list[dict[str, Any]]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    out: list[dict[str, Any]] = []
    for cc in concepts or []:
        if isinstance(cc, dict):
            out.extend(c for c in cc.get("coding") or [] if isinstance(c, dict))
    return out


def visit_types(appointment: dict[str, Any]) -> list[str]:
    """The "system|code" of every coding of Appointment.appointmentType and serviceType."""
    return [f"{c.get('system', '')}|{c.get('code', '')}" for c in
            _codings(appointment.get("appointmentType")) + _codings(
                appointment.get("serviceType"))]


def is_virtual(appointment: dict[str, Any], settings: VisitSettings) -> bool:
    """Whether an Appointment is a virtual visit."""
    if virtual_service(appointment) is not None:
        return True
    return bool(set(settings.virtual_types) & set(visit_types(appointment)))


def encounter_virtual_service(appointment: dict[str, Any]) -> dict[str, Any]:
    """The Encounter's virtualService extension for a visit booked as `appointment`: the
    Appointment's own channel details, else a telefhir audio-video channel."""
    ext = virtual_service(appointment)
    if ext is not None:
        return {**ext, "url": ENCOUNTER_VIRTUAL}
    return video_service(ENCOUNTER_VIRTUAL, "audio-video")


def video_service(url: str, code: str) -> dict[str, Any]:
    """A virtualService extension (nested form) with a telefhir channel type."""
    return {"url": url, "extension": [{"url": "channelType", "valueCoding": {
        "system": CHANNEL_SYSTEM, "code": code, "display": CHANNELS[code]}}]}
