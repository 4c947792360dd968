"""Which patch format a PATCH body is (https://hl7.org/fhir/R4/http.html#patch), by media type:

- `application/json-patch+json`: JSON Patch (RFC 6902);
- `application/merge-patch+json`: JSON Merge Patch (RFC 7396);
- `application/fhir+json` or `application/json`: a Parameters resource is a FHIRPath Patch
  (https://hl7.org/fhir/R4/fhirpatch.html); any other object is a JSON Merge Patch, as fhirpy's
  `patch()` sends it. (To merge-patch a Parameters resource, say `application/merge-patch+json`.)

XML Patch is not offered."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.patching.fhirpath_patch import apply_fhirpath_patch, parse_fhirpath_patch
from fhir_server.patching.json_patch import apply_json_patch, parse_json_patch
from fhir_server.patching.merge_patch import merge_patch, parse_merge_patch
from resources import json_numbers

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"  # FHIRPath Patch in XML: the dispatcher reads it into JSON
# as the CapabilityStatement lists them
PATCH_FORMATS = (JSON_PATCH, FHIR_JSON, FHIR_XML, MERGE_PATCH)
_FHIR_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")


@dataclass(frozen=True)
class Patch:
    """A parsed patch document: `apply` returns the patched resource (it may change its
    argument) or raises FhirError."""

    format: str  # "JSON Patch" | "FHIRPath Patch" | "JSON Merge Patch"
    apply: Callable[[dict[str, Any]], Any]


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header."""
    return (content_type or "").split(";")[0].strip().lower()


def parse_patch(content_type: str | None, body: bytes) -> Patch:
    """The patch a body of this Content-Type holds: 415 for another media type, 400 for a body
    that is not a patch document of its type."""
    ctype = media_type(content_type)
    if ctype == JSON_PATCH:
        ops = parse_json_patch(body)
        return Patch("JSON Patch", lambda resource: apply_json_patch(resource, ops))
    if ctype == MERGE_PATCH:
        doc = parse_merge_patch(body)
        return Patch("JSON Merge Patch", lambda resource: merge_patch(resource, doc))
    if ctype in _FHIR_TYPES:
        doc = parse_merge_patch(body)
        if doc.get("resourceType") == "Parameters":
            steps = parse_fhirpath_patch(doc)
            return Patch("FHIRPath Patch", lambda resource: apply_fhirpath_patch(resource, steps))
        return Patch("JSON Merge Patch", lambda resource: merge_patch(resource, doc))
    raise FhirError.of(
        415, "not-supported",
        f"PATCH with Content-Type '{ctype or '(none)'}' is not supported; send JSON Patch as "
        f"{JSON_PATCH}, FHIRPath Patch (a Parameters resource) as {FHIR_JSON}, or JSON Merge "
        f"Patch as {MERGE_PATCH}",
    )


def patch_of_resource(resource: dict[str, Any]) -> tuple[str, bytes]:
    """(media type, body) of the patch a Bundle PATCH entry carries: a Binary holds a JSON
    Patch or JSON Merge Patch (its contentType says which), a Parameters resource is a FHIRPath
    Patch (https://hl7.org/fhir/R4/http.html#patch, #transaction). 400 for anything else."""
    rtype = resource.get("resourceType")
    if rtype == "Parameters":
        return FHIR_JSON, json_numbers.dumps(resource)
    if rtype == "Binary":
        data, ctype = resource.get("data"), resource.get("contentType")
        if not isinstance(ctype, str) or not ctype:
            raise FhirError.of(400, "required", "the Binary needs a contentType saying which "
                                                "patch format it holds")
        if not isinstance(data, str):
            raise FhirError.of(400, "required", "the Binary has no data (the base64 patch)")
        try:
            return ctype, base64.b64decode(data, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise FhirError.of(400, "invalid", f"Binary.data is not base64: {exc}") from exc
    raise FhirError.of(
        400, "not-supported",
        f"a PATCH entry's resource is a Binary holding a JSON Patch or JSON Merge Patch, or a "
        f"Parameters resource holding a FHIRPath Patch; not a {rtype}",
    )
