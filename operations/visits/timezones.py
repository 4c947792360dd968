"""Time zones of a visit's people. Instants are stored in UTC; each person's IANA zone is kept
on their Practitioner or Patient resource in the standard extension
http://hl7.org/fhir/StructureDefinition/timezone (valueCode, e.g. "America/New_York";
https://hl7.org/fhir/extensions/StructureDefinition-timezone.html) and used when rendering:
the clinician's queue ("today" is the practitioner's today), the visit and waiting pages.
Without one, TELEFHIR_DEFAULT_TIMEZONE (UTC by default) is used."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TIMEZONE_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"


def default_zone() -> ZoneInfo:
    return zone(os.environ.get("TELEFHIR_DEFAULT_TIMEZONE", "UTC")) or ZoneInfo("UTC")


def zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone `name`, or None when it is not one."""
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(resource: dict[str, Any] | None) -> ZoneInfo:
    """The zone a Practitioner or Patient carries in the timezone extension, else the
    default."""
    for ext in (resource or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == TIMEZONE_EXT:
            found = zone(ext.get("valueCode"))
            if found is not None:
                return found
    return default_zone()


def parse(instant: str) -> datetime | None:
    """A FHIR instant/dateTime with a time and offset, as an aware datetime."""
    try:
        dt = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return dt if dt.tzinfo is not None else None


def local(instant: str | None, tz: ZoneInfo) -> dict[str, str] | None:
    """How an instant reads in `tz`: {"zone", "iso" (with the local offset), "time"
    ("09:30"), "date" ("2026-03-08"), "abbr" ("EST")}."""
    dt = parse(instant or "")
    if dt is None:
        return None
    here = dt.astimezone(tz)
    return {"zone": tz.key, "iso": here.isoformat(timespec="seconds"),
            "date": here.date().isoformat(), "time": here.strftime("%H:%M"),
            "abbr": here.strftime("%Z")}


def day_bounds(day: date, tz: ZoneInfo) -> tuple[str, str]:
    """[start, end) of a local calendar day in `tz` as UTC instants (23 or 25 hours long on a
    daylight-saving change)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return (start.astimezone(UTC).isoformat(timespec="seconds"),
            end.astimezone(UTC).isoformat(timespec="seconds"))


def today(tz: ZoneInfo, now: datetime | None = None) -> date:
    """The calendar day it is in `tz`."""
    return (now or datetime.now(UTC)).astimezone(tz).date()
