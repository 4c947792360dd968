"""Content negotiation: _format, Accept (with q-values), Content-Type and _pretty
(https://hl7.org/fhir/R4/http.html#mime-type). JSON and XML are offered; without _format or a
specific Accept, the answer is in the format of the request body (XML in, XML out), else JSON."""

from __future__ import annotations

from functools import lru_cache

from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
XML_TYPES = {FHIR_XML, "application/xml", "application/xml+fhir", "xml", "text/xml"}
XML_ANSWERS = (FHIR_XML, "application/xml")  # the XML media types the server answers with
# CapabilityStatement.format (https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.format)
FORMATS = (FHIR_JSON, FHIR_XML, "json", "xml")
_WILDCARD = "*"


def _media_types(header: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        out.append((bits[0].lower(), q))
    return out


def _named(media: str) -> str | None:
    """The media type we answer for one named type (not a wildcard), or None."""
    if media in (FHIR_JSON, "application/json+fhir", "json", "text/json"):
        return FHIR_JSON
    if media == "application/json":
        return "application/json"
    if media in (FHIR_XML, "application/xml+fhir", "xml"):
        return FHIR_XML
    if media in ("application/xml", "text/xml"):
        return "application/xml"
    return None


def format_type(fmt: str) -> str | None:
    """The media type a `_format` value asks for, or None if we do not produce it.
    ('+' arrives as a space when a client does not escape it in the query string.)"""
    return _named(fmt.split(";")[0].strip().lower().replace(" ", "+"))


@lru_cache(maxsize=256)
def _accepted(accept: str) -> str | None:
    """What an Accept header asks for: a media type, _WILDCARD (anything of ours), or None
    (cached: clients send the same few headers on every request). The highest q wins; ties
    keep the header's order; a type with q=0 is refused even under a wildcard."""
    types = _media_types(accept)
    refused = {m for media, q in types if q <= 0 and (m := _named(media))}
    for media, q in sorted(types, key=lambda t: -t[1]):
        if q <= 0:
            continue
        named = _named(media)
        if named is not None and named not in refused:
            return named
        if media in ("*/*", "application/*"):
            if not refused:
                return _WILDCARD
            for candidate in (FHIR_JSON, FHIR_XML):
                if candidate not in refused:
                    return candidate
    return None


def body_is_xml(req: FhirRequest) -> bool:
    """Whether the request carries an XML body (a resource to read as FHIR XML)."""
    ctype = req.header("content-type")
    if not ctype:
        return False
    return ctype.split(";")[0].strip().lower() in XML_TYPES and bool(req.body.strip())


def preferred_type(fmt: str | None, accept: str | None, default: str = FHIR_JSON) -> str | None:
    """The media type to answer with for a `_format` value and an Accept header; `default`
    where neither names one; None when the client accepts nothing we produce."""
    if fmt:
        return format_type(fmt)
    if not accept:
        return default
    media = _accepted(accept)
    return default if media == _WILDCARD else media


def response_type(req: FhirRequest) -> str:
    """The media type to answer `req` with, or 406 when the client accepts neither JSON nor
    XML. `_format` overrides Accept; with neither, the format of the request body."""
    fmt = req.param("_format")
    default = FHIR_XML if body_is_xml(req) else FHIR_JSON
    media = preferred_type(fmt, req.header("accept"), default)
    if media is not None:
        return media
    if fmt:
        raise FhirError.of(406, "not-supported",
                           f"_format '{fmt}' is not supported; use json or xml")
    raise FhirError.of(
        406, "not-supported",
        f"Cannot produce any of '{req.header('accept')}'; use {FHIR_JSON} or {FHIR_XML}",
    )


def is_xml(media: str) -> bool:
    """Whether an answer's media type (as `response_type` gives it) is XML."""
    return media in XML_ANSWERS


def check_body_type(req: FhirRequest, allowed: set[str]) -> None:
    """415 unless the request body's Content-Type is one of `allowed`."""
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype in allowed:
        return
    if not ctype and FHIR_JSON in allowed:
        return
    raise FhirError.of(
        415, "not-supported",
        f"Content-Type '{ctype or '(none)'}' is not supported here; "
        f"use {', '.join(sorted(allowed))}",
    )


def pretty(req: FhirRequest) -> bool:
    """_pretty=true asks for indented JSON or XML."""
    return (req.param("_pretty") or "").lower() == "true"
