"""The XML format at the edges of the dispatcher (https://hl7.org/fhir/R4/xml.html): an XML
request body becomes the JSON the interactions take, and a JSON answer (stored bytes or a dict)
is written as XML, so no interaction or operation knows about XML."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.negotiation import FHIR_JSON
from fhir_server.request import FhirRequest, FhirResponse
from resources import json_numbers
from resources.json_to_xml import XmlRenderError, json_to_xml, loads, to_xml
from resources.xml_to_json import XmlParseError, parse

log = logging.getLogger("telefhir")


def json_request(req: FhirRequest) -> FhirRequest:
    """`req` with its FHIR XML body as FHIR JSON (Content-Type application/fhir+json);
    400 with an OperationOutcome naming the element at fault when the body is not FHIR XML
    (or, for a PATCH, not a Parameters resource: https://hl7.org/fhir/R4/fhirpatch.html)."""
    try:
        resource = parse(req.body)
    except XmlParseError as exc:
        raise FhirError.of(400, "structure", f"The XML body is not a valid FHIR resource: "
                           f"{exc.message}", exc.path or None) from exc
    except RecursionError as exc:
        raise FhirError.of(400, "structure", "The XML body is nested too deeply") from exc
    if req.method == "PATCH" and resource["resourceType"] != "Parameters":
        raise FhirError.of(400, "not-supported", "An XML PATCH body must be a FHIRPath Patch "
                           f"(a Parameters resource), not a {resource['resourceType']}; XML "
                           "Patch is not offered")
    body = json_numbers.dumps(resource)
    headers = dict(req.headers)
    headers["content-type"] = FHIR_JSON
    headers["content-length"] = str(len(body))
    return replace(req, headers=headers, body=body)


def xml_body(resp: FhirResponse, pretty: bool) -> bytes:
    """The XML of a response's JSON body; an XmlRenderError when it cannot be written."""
    if resp.raw is not None:
        return json_to_xml(resp.raw, pretty)
    assert resp.resource is not None
    # through JSON text: Bundles splice stored bodies in as orjson.Fragment
    return to_xml(loads(json_numbers.dumps(resp.resource)), pretty)


def as_xml(resp: FhirResponse, pretty: bool) -> FhirResponse:
    """`resp` with its JSON body written as XML (in `raw`, whose Content-Type is already the
    XML one). Stored data that XML cannot carry (a character XML 1.0 forbids, a narrative that
    is not well-formed) gives an OperationOutcome saying so instead: 406 for a character, 500
    otherwise."""
    try:
        body = xml_body(resp, pretty)
    except (XmlRenderError, ValueError, RecursionError) as exc:
        log.warning("cannot write %s as XML: %s", resp.headers.get("Content-Location", "a "
                    "response"), exc)
        path = exc.path if isinstance(exc, XmlRenderError) else ""
        status = 406 if "XML 1.0" in str(exc) else 500
        outcome = operation_outcome([Issue(
            "error", "not-supported" if status == 406 else "exception",
            f"The answer cannot be written as XML: {exc}; ask for JSON (_format=json)",
            (path,) if path else (),
        )])
        headers = {k: v for k, v in resp.headers.items()
                   if k not in ("ETag", "Last-Modified", "Location", "Content-Location")}
        return FhirResponse(status, raw=to_xml(outcome, pretty), headers=headers)
    return FhirResponse(resp.status, raw=body, headers=resp.headers)


def outcome_xml(outcome: dict[str, Any]) -> bytes:
    """An OperationOutcome as XML (errors raised before the dispatcher)."""
    return to_xml(outcome)
