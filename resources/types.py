"""R4 types: the resource types (https://hl7.org/fhir/R4/resourcelist.html) and the formats of
the primitive datatypes (https://hl7.org/fhir/R4/datatypes.html#primitive)."""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson

from resources.json_numbers import DecimalText
from resources.narrative import narrative_xml

_DATA = Path(__file__).resolve().parent / "data" / "structures.json.gz"


def _load() -> frozenset[str]:
    data = orjson.loads(gzip.decompress(_DATA.read_bytes()))
    return frozenset(data["resourceTypes"])


RESOURCE_TYPES: frozenset[str] = _load()
"""All concrete (non-abstract) R4 resource types: 146 of them."""


def is_resource_type(name: str) -> bool:
    """Whether ``name`` is a concrete R4 resource type (case-sensitive, as in URLs and JSON)."""
    return name in RESOURCE_TYPES


def describe(value: object) -> str:
    """How a JSON value is named in messages ("a string", "null"...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_YEAR = r"(?P<y>[0-9](?:[0-9](?:[0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(?P<m>0[1-9]|1[0-2])"
_DAY = r"(?P<d>0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
_ZONE = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE_RE = re.compile(rf"{_YEAR}(?:-{_MONTH}(?:-{_DAY})?)?")
_DATETIME_RE = re.compile(rf"{_YEAR}(?:-{_MONTH}(?:-{_DAY}(?:T{_TIME}{_ZONE})?)?)?")
_INSTANT_RE = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
_TIME_RE = re.compile(_TIME)
# The R4 regexes use Java's ASCII \s and \S.
_WS = " \t\n\x0b\f\r"
_CODE_RE = re.compile(rf"[^{_WS}]+(?:[{_WS}][^{_WS}]+)*")
_URI_RE = re.compile(rf"[^{_WS}]*")
_STRING_BAD_RE = re.compile(r"[\x0b\f]")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_OID_RE = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")
_UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# RFC 4648 base64 (the R4 regex omits '/', a known erratum); whitespace is allowed and ignored.
_BASE64_RE = re.compile(
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})?"
)
_SPACE_RE = re.compile(r"\s+")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_INT32_MAX = 2_147_483_647
_MAX_STRING = 1024 * 1024

Checker = Callable[[object], "str | None"]


def _not_string(value: object) -> str:
    if value == "":
        return "empty strings are not allowed"
    return f"expected a JSON string, not {describe(value)}"


def _regex_checker(pattern: re.Pattern[str], what: str) -> Checker:
    match = pattern.fullmatch

    def check(value: object) -> str | None:
        if type(value) is not str or not value:
            return _not_string(value)
        if match(value) is None:
            return f"{value!r} is not a valid {what}"
        return None

    return check


def _calendar(pattern: re.Pattern[str], what: str) -> Checker:
    """Dates must match the R4 regex and exist in the calendar (no Feb 30)."""
    match = pattern.fullmatch

    def check(value: object) -> str | None:
        if type(value) is not str or not value:
            return _not_string(value)
        m = match(value)
        if m is None:
            return f"{value!r} is not a valid {what}"
        day = m.group("d")
        if day is not None and day > "28":
            year, month = int(m.group("y")), int(m.group("m"))
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            limit = 28 if month == 2 and not leap else _DAYS_IN_MONTH[month]
            if int(day) > limit:
                return f"{value!r} is not a valid {what}: day {day} does not exist"
        return None

    return check


def _check_string(value: object) -> str | None:
    if type(value) is not str or not value:
        return _not_string(value)
    if not value.isprintable() and _STRING_BAD_RE.search(value) is not None:
        return "vertical tab and form feed characters are not allowed"
    if len(value) > _MAX_STRING:
        return "strings are limited to 1 MB"
    return None


def _check_markdown(value: object) -> str | None:
    if type(value) is not str or not value:
        return _not_string(value)
    return None


def _check_boolean(value: object) -> str | None:
    if type(value) is not bool:
        return f"expected true or false, not {describe(value)}"
    return None


def _int_checker(low: int, what: str) -> Checker:
    def check(value: object) -> str | None:
        if type(value) is not int:
            return f"expected a JSON integer, not {describe(value)}"
        if not low <= value <= _INT32_MAX:
            return f"{value} is out of range for {what}"
        return None

    return check


def _check_decimal(value: object) -> str | None:
    kind = type(value)
    if kind is float or kind is DecimalText:
        return None if math.isfinite(value) else "not a finite number"  # type: ignore[arg-type]
    if kind is int or kind is Decimal:
        return None
    return f"expected a JSON number, not {describe(value)}"


def _check_base64(value: object) -> str | None:
    if type(value) is not str or not value:
        return _not_string(value)
    packed = _SPACE_RE.sub("", value)
    if not packed or _BASE64_RE.fullmatch(packed) is None:
        return "not valid base64"
    return None


def check_xhtml(value: object) -> str | None:
    """Narrative.div: well-formed XHTML whose root is a div
    (https://hl7.org/fhir/R4/narrative.html#xhtml)."""
    if type(value) is not str or not value:
        return "Narrative div: " + _not_string(value)
    if not value.lstrip().startswith("<div"):
        return "Narrative div must be an XHTML <div> element"
    try:
        narrative_xml(value)
    except ValueError as exc:
        return f"Narrative div: {exc}"
    return None


PRIMITIVE_CHECKERS: dict[str, Checker] = {
    "base64Binary": _check_base64,
    "boolean": _check_boolean,
    "canonical": _regex_checker(_URI_RE, "canonical"),
    "code": _regex_checker(_CODE_RE, "code"),
    "date": _calendar(_DATE_RE, "date"),
    "dateTime": _calendar(_DATETIME_RE, "dateTime"),
    "decimal": _check_decimal,
    "id": _regex_checker(_ID_RE, "id (1-64 of A-Z a-z 0-9 - .)"),
    "instant": _calendar(_INSTANT_RE, "instant"),
    "integer": _int_checker(-_INT32_MAX - 1, "integer"),
    "markdown": _check_markdown,
    "oid": _regex_checker(_OID_RE, "oid"),
    "positiveInt": _int_checker(1, "positiveInt"),
    "string": _check_string,
    "time": _regex_checker(_TIME_RE, "time"),
    "unsignedInt": _int_checker(0, "unsignedInt"),
    "uri": _regex_checker(_URI_RE, "uri"),
    "url": _regex_checker(_URI_RE, "url"),
    "uuid": _regex_checker(_UUID_RE, "uuid"),
}
"""Primitive type -> check returning None or what is wrong (xhtml is checked by check_xhtml)."""
