"""Turn values selected by a search expression into index values, per parameter type.

What each FHIR datatype means for each search parameter type follows
https://hl7.org/fhir/R4/search.html#ptypes (e.g. a HumanName matches a string search on any of
its parts; a Period is a date range; an Identifier is a token system|value).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fhir_server.search.normalize import clip, date_range, normalize_string
from fhir_server.search.paths import PRIMITIVES
from fhir_server.search.schema import DATE_MAX, DATE_MIN, NUM_MAX, NUM_MIN
from fhir_server.search.ucum import UCUM_SYSTEM, canonical
from resources.search_parameters import resource_types

EXACT_MAX = 1024
CANONICAL_MARK = "urn:telefhir:ucum-canonical"
"""System of composite quantity components stored in canonical UCUM units."""
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"

_QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"}
)
_STRING_PARTS = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}
_REF_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _items(x: Any) -> list[Any]:
    """A JSON array as a list (anything else: empty)."""
    return x if isinstance(x, list) else []


def _obj(x: Any) -> dict[str, Any]:
    """A JSON object as a dict (anything else: empty)."""
    return x if isinstance(x, dict) else {}


def guess_type(v: Any) -> str | None:
    """The datatype of a value fhirpathpy returned without type information."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, int | float | Decimal):
        return "decimal"
    if not isinstance(v, dict):
        return None
    if "resourceType" in v:
        return "Resource"
    if "coding" in v:
        return "CodeableConcept"
    if "reference" in v or ("identifier" in v and len(v) <= 3):
        return "Reference"
    if "family" in v or "given" in v:
        return "HumanName"
    if "line" in v or "city" in v or "postalCode" in v:
        return "Address"
    if "start" in v or "end" in v:
        return "Period"
    if "low" in v or "high" in v:
        return "Range"
    if "currency" in v:
        return "Money"
    if "value" in v and ("unit" in v or "code" in v):
        return "Quantity"
    if "value" in v and "system" in v:
        return "Identifier"
    if "code" in v:
        return "Coding"
    if "text" in v:
        return "CodeableConcept"
    return None


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [s for s in v if isinstance(s, str)]
    return []


def string_values(typ: str | None, v: Any) -> list[tuple[str, str]]:
    """(normalised, exact) pairs for a string search (https://hl7.org/fhir/R4/search.html#string)."""
    if typ is None:
        typ = guess_type(v)
    parts: list[str] = []
    if isinstance(v, str):
        parts = [v]
    elif isinstance(v, dict):
        keys = _STRING_PARTS.get(typ or "")
        if keys is None:
            keys = ("text", "display", "value", "family", "given", "name", "title")
        for k in keys:
            parts.extend(_strings(v.get(k)))
    return [(normalize_string(s), s[:EXACT_MAX]) for s in parts if s.strip()]


def _coding(c: Any) -> tuple[str, str, str | None] | None:
    if not isinstance(c, dict):
        return None
    code = c.get("code")
    display = c.get("display")
    text = normalize_string(display) if isinstance(display, str) else None
    if not isinstance(code, str):
        return ("", "", text) if text else None
    system = c.get("system")
    return clip(system) if isinstance(system, str) else "", clip(code), text


def token_values(typ: str | None, v: Any) -> list[tuple[str, str, str | None]]:
    """(system, code, normalised text) triples (https://hl7.org/fhir/R4/search.html#token);
    a text-only row has code ''."""
    if typ is None:
        typ = guess_type(v)
    if isinstance(v, bool):
        return [("", "true" if v else "false", None)]
    if isinstance(v, str):
        return [("", clip(v), None)]
    if isinstance(v, int | float | Decimal):
        return [("", str(v), None)]
    if not isinstance(v, dict):
        return []
    out: list[tuple[str, str, str | None]] = []
    if typ == "CodeableConcept":
        for c in _items(v.get("coding")):
            row = _coding(c)
            if row:
                out.append(row)
        text = v.get("text")
        if isinstance(text, str) and text.strip():
            out.append(("", "", normalize_string(text)))
    elif typ == "Coding":
        row = _coding(v)
        if row:
            out.append(row)
    elif typ == "Identifier":
        value = v.get("value")
        if isinstance(value, str):
            system = v.get("system")
            t = v.get("type")
            ttext = t.get("text") if isinstance(t, dict) else None
            out.append(
                (
                    clip(system) if isinstance(system, str) else "",
                    clip(value),
                    normalize_string(ttext) if isinstance(ttext, str) else None,
                )
            )
    elif typ == "ContactPoint":
        value = v.get("value")
        if isinstance(value, str):
            system = v.get("system")
            out.append((system if isinstance(system, str) else "", clip(value), None))
    elif typ in _QUANTITY_TYPES:
        code = v.get("code")
        if isinstance(code, str):
            system = v.get("system")
            out.append((clip(system) if isinstance(system, str) else "", clip(code), None))
    elif typ == "Reference":
        ident = v.get("identifier")
        if isinstance(ident, dict):
            out.extend(token_values("Identifier", ident))
    return out


def identifier_type_values(v: Any) -> list[tuple[str, str]]:
    """(type system|type code, value) pairs for :of-type (https://hl7.org/fhir/R4/search.html#token)."""
    if not isinstance(v, dict) or not isinstance(v.get("value"), str):
        return []
    t = v.get("type")
    out: list[tuple[str, str]] = []
    if isinstance(t, dict):
        for c in _items(t.get("coding")):
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                system = c.get("system") if isinstance(c.get("system"), str) else ""
                out.append((clip(f"{system}|{c['code']}"), clip(v["value"])))
    return out


def _date(s: Any) -> tuple[int, int] | None:
    if not isinstance(s, str):
        return None
    try:
        return date_range(s)
    except ValueError:
        return None


def date_values(typ: str | None, v: Any) -> list[tuple[int, int]]:
    """Inclusive epoch-microsecond ranges (https://hl7.org/fhir/R4/search.html#date)."""
    if typ is None:
        typ = guess_type(v)
    if isinstance(v, str):
        r = _date(v)
        return [r] if r else []
    if not isinstance(v, dict):
        return []
    if typ == "Period":
        start, end = _date(v.get("start")), _date(v.get("end"))
        if start is None and end is None:
            return []
        return [(start[0] if start else DATE_MIN, end[1] if end else DATE_MAX)]
    if typ == "Timing":
        out = [r for r in (_date(e) for e in _items(v.get("event"))) if r]
        repeat = v.get("repeat")
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            out.extend(date_values("Period", repeat["boundsPeriod"]))
        return out
    return []


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float | Decimal):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def number_values(typ: str | None, v: Any) -> list[tuple[float, float]]:
    """(low, high) of a number, or of a Range (https://hl7.org/fhir/R4/search.html#number)."""
    n = _num(v)
    if n is not None:
        return [(n, n)]
    if isinstance(v, dict):
        if "low" in v or "high" in v:
            lo = _num(_obj(v.get("low")).get("value"))
            hi = _num(_obj(v.get("high")).get("value"))
            if lo is None and hi is None:
                return []
            return [(lo if lo is not None else NUM_MIN, hi if hi is not None else NUM_MAX)]
        n = _num(v.get("value"))
        if n is not None:
            return [(n, n)]
    return []


QuantityRow = tuple[str, str, str, float, float, str | None, float | None, float | None]


def _quantity_row(q: dict[str, Any], low: float, high: float) -> QuantityRow:
    system = q.get("system") if isinstance(q.get("system"), str) else ""
    code = q.get("code") if isinstance(q.get("code"), str) else ""
    unit = q.get("unit") if isinstance(q.get("unit"), str) else ""
    canon_code = canon_low = canon_high = None
    if code and system == UCUM_SYSTEM:
        lo = canonical(low, code) if low > NUM_MIN else None
        hi = canonical(high, code) if high < NUM_MAX else None
        if lo or hi:
            canon_code = (lo or hi)[1]  # type: ignore[index]
            canon_low = lo[0] if lo else NUM_MIN
            canon_high = hi[0] if hi else NUM_MAX
    return (
        clip(system or ""),
        clip(code or ""),
        clip(unit or ""),
        low,
        high,
        canon_code,
        canon_low,
        canon_high,
    )


def quantity_values(typ: str | None, v: Any) -> list[QuantityRow]:
    """Quantity rows: as written, plus canonical UCUM (https://hl7.org/fhir/R4/search.html#quantity)."""
    if not isinstance(v, dict):
        return []
    if typ is None:
        typ = guess_type(v)
    if typ == "Range":
        low_q, high_q = _obj(v.get("low")), _obj(v.get("high"))
        lo, hi = _num(low_q.get("value")), _num(high_q.get("value"))
        if lo is None and hi is None:
            return []
        unit_of = low_q if lo is not None else high_q
        return [
            _quantity_row(
                unit_of, lo if lo is not None else NUM_MIN, hi if hi is not None else NUM_MAX
            )
        ]
    if typ == "Money":
        n = _num(v.get("value"))
        cur = v.get("currency")
        if n is None:
            return []
        q = {"system": CURRENCY_SYSTEM, "code": cur if isinstance(cur, str) else ""}
        return [_quantity_row(q, n, n)]
    n = _num(v.get("value"))
    if n is None:
        return []
    comparator = v.get("comparator")
    low, high = n, n
    if comparator in ("<", "<="):
        low = NUM_MIN
    elif comparator in (">", ">="):
        high = NUM_MAX
    return [_quantity_row(v, low, high)]


RefRow = tuple[str | None, str | None, str | None, str | None, str | None]


def parse_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """(target type, target id, absolute URL) of a reference string; None for a contained
    reference (``#x``) or one that cannot be understood."""
    ref = ref.strip()
    if not ref or ref.startswith("#"):
        return None
    absolute = "://" in ref or ref.startswith("urn:")
    m = _REF_RE.search(ref)
    typ = rid = None
    if m and m.group(1) in resource_types():
        typ, rid = m.group(1), m.group(2)
        if not absolute and m.start() != 0:
            return None
    if absolute:
        url = ref.split("|", 1)[0]
        if m and typ:
            url = url[: m.end(2)] if "/_history/" in url else url
        return typ, rid, clip(url)
    if typ is None:
        return None
    return typ, rid, None


def reference_values(typ: str | None, v: Any) -> list[RefRow]:
    """(target type, id, URL, identifier system, identifier value)
    (https://hl7.org/fhir/R4/search.html#reference); canonical strings give only a URL."""
    if typ is None:
        typ = guess_type(v)
    if isinstance(v, str):  # canonical / uri: by URL, and by type/id when it has that shape
        url = v.split("|", 1)[0].strip()
        if not url:
            return []
        shape = parse_reference(url)
        if shape is not None and shape[0] is not None:
            return [(shape[0], shape[1], clip(url), None, None)]
        return [(None, None, clip(url), None, None)]
    if not isinstance(v, dict):
        return []
    if "resourceType" in v:  # Bundle.entry[0].resource
        rid, rtype = v.get("id"), v.get("resourceType")
        ok = isinstance(rid, str) and isinstance(rtype, str)
        return [(rtype, rid, None, None, None)] if ok else []
    parsed: tuple[str | None, str | None, str | None] | None = None
    ref = v.get("reference")
    if isinstance(ref, str):
        parsed = parse_reference(ref)
    ident = v.get("identifier")
    id_system: str | None = None
    id_value: str | None = None
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        s = ident.get("system")
        id_system = clip(s) if isinstance(s, str) else ""
        id_value = clip(ident["value"])
    if parsed is None and id_value is None:
        return []
    ttype, tid, ref_url = parsed if parsed else (None, None, None)
    return [(ttype, tid, ref_url, id_system, id_value)]


def uri_values(typ: str | None, v: Any) -> list[str]:
    """URIs (https://hl7.org/fhir/R4/search.html#uri)."""
    if isinstance(v, str) and v.strip():
        return [clip(v.strip())]
    return []


CompRow = tuple[str | None, str | None, float | None, float | None]


def component_values(param_type: str, typ: str | None, v: Any) -> list[CompRow]:
    """One composite component as (a, b, lo, hi) (https://hl7.org/fhir/R4/search.html#composite):
    token (system, code), quantity (system, code, value range; plus a second row
    (CANONICAL_MARK, canonical code, canonical range) when the unit converts),
    date (-, -, low, high), number (-, -, low, high), string (normalised, exact),
    reference (type, id), uri (uri)."""
    if param_type == "token":
        return [(s, c, None, None) for s, c, _ in token_values(typ, v) if c]
    if param_type == "quantity":
        out: list[CompRow] = []
        for s, c, _u, lo, hi, cc, clo, chi in quantity_values(typ, v):
            out.append((s, c, lo, hi))
            if cc is not None:
                out.append((CANONICAL_MARK, cc, clo, chi))
        return out
    if param_type == "date":
        return [(None, None, float(lo), float(hi)) for lo, hi in date_values(typ, v)]
    if param_type == "number":
        return [(None, None, lo, hi) for lo, hi in number_values(typ, v)]
    if param_type == "string":
        return [(n, e, None, None) for n, e in string_values(typ, v)]
    if param_type == "reference":
        return [(t, i, None, None) for t, i, *_ in reference_values(typ, v) if i]
    if param_type == "uri":
        return [(u, None, None, None) for u in uri_values(typ, v)]
    return []


def is_primitive(typ: str | None) -> bool:
    """Whether a FHIR type name is a primitive."""
    return typ in PRIMITIVES
