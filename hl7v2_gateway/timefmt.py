"""v2 dates and times (DT, DTM, TS) to FHIR date/dateTime/instant, and back.

DTM is YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] (HL7 v2.5 section 2.A.22). FHIR wants a
time zone whenever a time is given (https://hl7.org/fhir/R4/datatypes.html#dateTime): a
value without one takes the configured zone of the sender (`timezone`, default UTC), as the
v2-to-FHIR IG's DTM[dateTime] map leaves to the implementer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<z>[+-]\d{4})?$"
)


class BadTime(ValueError):
    """Not a valid DT/DTM value."""


@dataclass(frozen=True)
class V2Time:
    """A parsed DTM: the FHIR text and, when it names a moment, that moment in UTC."""

    fhir: str  # date or dateTime text for FHIR
    precision: str  # year | month | day | second
    moment: datetime | None  # aware datetime when precision is second, else the day start

    @property
    def utc_us(self) -> int:
        """Microseconds since the epoch (start of the period for dates), for comparisons."""
        assert self.moment is not None
        return int(self.moment.timestamp() * 1_000_000)


def zone(name: str | None) -> tzinfo:
    """A tz database zone or a fixed offset (+0200); UTC for None."""
    if not name or name.upper() == "UTC":
        return UTC
    m = re.match(r"^([+-])(\d{2}):?(\d{2})$", name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    return ZoneInfo(name)


def parse_dtm(text: str, default_zone: tzinfo = UTC) -> V2Time:
    """Parse DT/DTM/TS (the first component of TS); raise BadTime when it is not one."""
    m = _DTM.match(text.strip())
    if not m:
        raise BadTime(f"'{text}' is not a date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
    g = m.groupdict()
    try:
        year = int(g["y"])
        month = int(g["mo"] or 1)
        day = int(g["d"] or 1)
        hour, minute, second = int(g["h"] or 0), int(g["mi"] or 0), int(g["s"] or 0)
        frac = g["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        tz: tzinfo = default_zone
        if g["z"]:
            sign = 1 if g["z"][0] == "+" else -1
            zh, zm = int(g["z"][1:3]), int(g["z"][3:5])
            if zh > 14 or zm > 59:
                raise BadTime(f"'{text}' has an invalid time zone offset {g['z']}")
            tz = timezone(sign * timedelta(hours=zh, minutes=zm))
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise BadTime(f"'{text}' is not a valid date/time: {exc}") from exc
    if g["h"] is None:
        if g["mo"] is None:
            return V2Time(f"{year:04d}", "year", moment)
        if g["d"] is None:
            return V2Time(f"{year:04d}-{month:02d}", "month", moment)
        return V2Time(f"{year:04d}-{month:02d}-{day:02d}", "day", moment)
    offset = moment.utcoffset() or timedelta(0)
    total = int(offset.total_seconds() // 60)
    tz_text = "Z" if total == 0 else (
        f"{'+' if total >= 0 else '-'}{abs(total) // 60:02d}:{abs(total) % 60:02d}")
    sec = f"{second:02d}" + (f".{frac}" if frac else "")
    fhir = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{sec}{tz_text}"
    return V2Time(fhir, "second", moment)


def now_dtm() -> str:
    """Now as a DTM with UTC offset (for MSH-7 of messages we write)."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


def fhir_to_dtm(value: str | None) -> str:
    """A FHIR date/dateTime/instant as a DTM (offset kept); empty for None."""
    if not value:
        return ""
    m = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2})(?::(\d{2}))?"
                 r"(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$", value)
    if not m:
        return ""
    y, mo, d, h, mi, s, z = m.groups()
    out = y + (mo or "") + (d or "")
    if h:
        out += h + mi + (s or "00")
        if z == "Z":
            out += "+0000"
        elif z:
            out += z.replace(":", "")
    return out
