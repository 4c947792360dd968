"""Instants as stored (epoch microseconds) and as shown (FHIR instant, HTTP-date)."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_last = 0
_lock = threading.Lock()


def now_us() -> int:
    """Current time in microseconds, strictly increasing within this process."""
    global _last
    with _lock:
        t = time.time_ns() // 1000
        if t <= _last:
            t = _last + 1
        _last = t
        return t


def to_instant(us: int) -> str:
    """FHIR instant (https://hl7.org/fhir/R4/datatypes.html#instant) in UTC."""
    dt = _EPOCH + timedelta(microseconds=us)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def to_http_date(us: int) -> str:
    """RFC 9110 HTTP-date for Last-Modified."""
    return format_datetime(datetime.fromtimestamp(us // 1_000_000, tz=UTC), usegmt=True)


def from_http_date(value: str) -> int | None:
    """Epoch microseconds of an HTTP-date, or None if it is not one."""
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int((dt - _EPOCH).total_seconds()) * 1_000_000


def parse_instant_us(value: str) -> tuple[int, int] | None:
    """A FHIR date/dateTime/instant as [low, high] epoch microseconds (its precision as a
    range; https://hl7.org/fhir/R4/search.html#date), or None if malformed."""
    m = re.fullmatch(
        r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
        r"(Z|[+-]\d{2}:\d{2})?)?)?)?",
        value,
    )
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        tzinfo = UTC
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        if mo is None:
            low = datetime(int(y), 1, 1, tzinfo=tzinfo)
            high = datetime(int(y) + 1, 1, 1, tzinfo=tzinfo) if int(y) < 9999 else None
        elif d is None:
            low = datetime(int(y), int(mo), 1, tzinfo=tzinfo)
            high = (
                datetime(int(y) + 1, 1, 1, tzinfo=tzinfo)
                if int(mo) == 12
                else datetime(int(y), int(mo) + 1, 1, tzinfo=tzinfo)
            )
        elif hh is None:
            low = datetime(int(y), int(mo), int(d), tzinfo=tzinfo)
            high = low + timedelta(days=1)
        else:
            low = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0), tzinfo=tzinfo)
            if frac:
                micros = int((frac[1:] + "000000")[:6])
                low = low.replace(microsecond=micros)
                digits = min(len(frac) - 1, 6)
                high = low + timedelta(microseconds=10 ** (6 - digits))
            elif ss is not None:
                high = low + timedelta(seconds=1)
            else:
                high = low + timedelta(minutes=1)
    except ValueError:
        return None
    lo = (low - _EPOCH) // _US
    hi = (high - _EPOCH) // _US - 1 if high else 253402300799999999
    return lo, hi
