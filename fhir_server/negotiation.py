"""Content negotiation: _format, Accept, Content-Type and _pretty
(https://hl7.org/fhir/R4/http.html#mime-type). Only JSON is offered."""

from __future__ import annotations

from functools import lru_cache

from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml",
             "html", "text/html", "ttl", "text/turtle", "application/x-turtle"}


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


def response_type(req: FhirRequest) -> str:
    """The media type to answer with, or 406 when the client accepts no JSON form."""
    fmt = req.param("_format")
    if fmt:
        base = fmt.split(";")[0].strip().lower()
        if base in JSON_TYPES:
            return "application/json" if base == "application/json" else FHIR_JSON
        raise FhirError.of(406, "not-supported", f"_format '{fmt}' is not supported; use json")
    accept = req.header("accept")
    if not accept:
        return FHIR_JSON
    media = _accepted(accept)
    if media is None:
        raise FhirError.of(
            406, "not-supported", f"Cannot produce any of '{accept}'; use {FHIR_JSON}"
        )
    return media


@lru_cache(maxsize=256)
def _accepted(accept: str) -> str | None:
    """The JSON media type an Accept header asks for, or None (cached: clients send the same
    few headers on every request)."""
    wanted = sorted(_media_types(accept), key=lambda t: -t[1])
    for media, q in wanted:
        if q <= 0:
            continue
        if media in (FHIR_JSON, "application/json+fhir", "*/*", "application/*"):
            return FHIR_JSON
        if media == "application/json":
            return "application/json"
    return None


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
    """_pretty=true asks for indented JSON."""
    return (req.param("_pretty") or "").lower() == "true"
