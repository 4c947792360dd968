"""Value normalisation shared by the indexer and the query builder, so both sides agree.

Strings: https://hl7.org/fhir/R4/search.html#string (case- and accent-insensitive);
dates: https://hl7.org/fhir/R4/search.html#date (a value's precision is an implicit range);
numbers: https://hl7.org/fhir/R4/search.html#number (significant figures give the range).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from fhir_server.search.schema import DATE_MAX, DATE_MIN, MAX_TEXT

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_DATE_RE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def clip(value: str) -> str:
    """Clip text to the indexed length (queries clip search values the same way)."""
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]


def fold(value: str) -> str:
    """Lower-case, accent-free form of `value` (case- and accent-insensitive matching)."""
    if value.isascii():
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalize_string(value: str) -> str:
    """Lower-case, accent-free, whitespace-collapsed, clipped form of `value`."""
    out = fold(value)
    if "  " in out or "\n" in out or "\t" in out:
        out = " ".join(out.split())
    return clip(out.strip())


def _to_us(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def date_range(value: str) -> tuple[int, int]:
    """The inclusive (low, high) epoch-microsecond range a FHIR date/dateTime/instant covers.

    A value without a time zone is taken as UTC. Raises ValueError for anything else."""
    m = _DATE_RE.fullmatch(value.strip())
    if not m:
        raise ValueError(f"not a FHIR date/dateTime: {value!r}")
    g = m.groupdict()
    year = int(g["y"])
    month = int(g["m"] or 1)
    day = int(g["d"] or 1)
    hour = int(g["H"] or 0)
    minute = int(g["M"] or 0)
    second = int(g["S"] or 0)
    frac = g["f"] or ""
    if g["H"] is not None and g["M"] is None:
        raise ValueError(f"a time needs hours and minutes: {value!r}")
    micro = int((frac + "000000")[:6]) if frac else 0
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hh, mm = int(g["tz"][1:3]), int(g["tz"][4:6])
        if hh > 14 or mm > 59:
            raise ValueError(f"bad time zone offset: {value!r}")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    if second == 60:  # a leap second: the last microsecond of the minute
        second, micro, frac = 59, 999999, "999999"
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    if g["m"] is None:
        end = _add_years(start, 1)
    elif g["d"] is None:
        end = _add_month(start)
    elif g["H"] is None:
        end = start + timedelta(days=1)
    elif g["S"] is None:
        end = start + timedelta(minutes=1)
    elif not frac:
        end = start + timedelta(seconds=1)
    elif len(frac) >= 6:
        end = start + _US
    else:
        end = start + timedelta(microseconds=10 ** (6 - len(frac)))
    low = _to_us(start)
    high = _to_us(end) - 1 if end is not None else DATE_MAX
    return max(low, DATE_MIN), min(high, DATE_MAX)


def _add_years(dt: datetime, n: int) -> datetime | None:
    try:
        return dt.replace(year=dt.year + n)
    except ValueError:
        return None


def _add_month(dt: datetime) -> datetime | None:
    if dt.month == 12:
        return _add_years(dt.replace(month=1), 1)
    return dt.replace(month=dt.month + 1)


def parse_decimal(value: str) -> Decimal:
    """A FHIR decimal (also accepts exponents, as search allows). Raises ValueError."""
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return d


def precision_range(d: Decimal) -> tuple[float, float]:
    """Half-open [low, high) range implied by the significant figures of `d`
    (https://hl7.org/fhir/R4/search.html#number: 100 means [99.5, 100.5))."""
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return float(d - half), float(d + half)
