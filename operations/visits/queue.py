"""The clinician's waiting-room queue: today's virtual visits of one practitioner, in
appointment-time then arrival order, with how long each patient has waited and whether they
are still there (their page's last heartbeat). Pure shaping over the resources the caller may
read; smart_apps.video.waiting_web fetches them with the caller's token and streams the queue.

An arrival is the start of the Encounter's `arrived` statusHistory entry (kept by the server:
operations.visits.status_history); a wait ends when the visit starts (in-progress)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from operations.visits.timezones import local, parse, zone_of

WAITING = ("arrived", "checked-in")


def arrival(encounter: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(arrived at, left the waiting room at) from Encounter.statusHistory."""
    for entry in reversed((encounter or {}).get("statusHistory") or []):
        if isinstance(entry, dict) and entry.get("status") == "arrived":
            period = entry.get("period") or {}
            return period.get("start"), period.get("end")
    return None, None


def _name(patient: dict[str, Any] | None) -> str | None:
    for n in (patient or {}).get("name") or []:
        if isinstance(n, dict):
            text = n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""])
            if text.strip():
                return str(text).strip()
    return None


def _ref(value: Any) -> str:
    return str(value.get("reference") or "") if isinstance(value, dict) else ""


def queue_items(appointments: list[dict[str, Any]], encounters: list[dict[str, Any]],
                patients: dict[str, dict[str, Any]], seen: dict[str, int], tz: ZoneInfo,
                now: datetime, gone_after_s: int) -> list[dict[str, Any]]:
    """One entry per Appointment (cancelled and no-show left out), ordered by appointment
    start, then arrival, then id. `seen`: Appointment id -> last heartbeat (epoch us)."""
    by_appt: dict[str, dict[str, Any]] = {}
    for e in encounters:
        for a in e.get("appointment") or []:
            by_appt.setdefault(_ref(a), e)
    now_us = int(now.timestamp() * 1_000_000)
    items = []
    for appt in appointments:
        if appt.get("status") in ("cancelled", "noshow", "entered-in-error"):
            continue
        aid = str(appt.get("id"))
        enc: dict[str, Any] | None = by_appt.get(f"Appointment/{aid}")
        patient_ref = next((_ref(p.get("actor")) for p in appt.get("participant") or []
                            if _ref(p.get("actor")).startswith("Patient/")), None)
        patient = patients.get(patient_ref or "")
        arrived, left = arrival(enc)
        waited = None
        if arrived and (enc or {}).get("status") in WAITING + ("in-progress", "finished"):
            began, ended = parse(arrived), parse(left or "") or now
            if began is not None:
                waited = max(0, int((ended - began).total_seconds()))
        last = seen.get(aid)
        item: dict[str, Any] = {
            "appointment": f"Appointment/{aid}", "status": appt.get("status"),
            "start": appt.get("start"), "end": appt.get("end"),
            "startLocal": local(appt.get("start"), tz),
            "patient": {"reference": patient_ref, "display": _name(patient) or next(
                (p.get("actor", {}).get("display") for p in appt.get("participant") or []
                 if _ref(p.get("actor")) == patient_ref), None),
                "startLocal": local(appt.get("start"), zone_of(patient)) if patient else None},
            "encounter": f"Encounter/{enc['id']}" if enc else None,
            "encounterStatus": (enc or {}).get("status"),
            "arrived": arrived, "arrivedLocal": local(arrived, tz), "waitedSeconds": waited,
            "lastSeen": None, "present": False,
        }
        if last is not None:
            item["lastSeen"] = datetime.fromtimestamp(last / 1e6).astimezone(tz).isoformat(
                timespec="seconds")
            item["present"] = (now_us - last) <= gone_after_s * 1_000_000 and \
                (enc or {}).get("status") in WAITING + ("in-progress",)
        items.append(item)
    items.sort(key=lambda i: (_ts(i["start"]), _ts(i["arrived"]), i["appointment"]))
    return items


def _ts(instant: str | None) -> float:
    dt = parse(instant or "")
    return dt.timestamp() if dt is not None else float("inf")
