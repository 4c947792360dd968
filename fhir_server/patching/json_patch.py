"""JSON Patch (RFC 6902, https://www.rfc-editor.org/rfc/rfc6902), applied by the `jsonpatch`
library; the body of `PATCH` with `application/json-patch+json`
(https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from fhir_server.errors import FhirError
from resources import json_numbers


def parse_json_patch(body: bytes) -> list[Any]:
    """The operations of a JSON Patch document, or 400 when it is not one."""
    try:
        ops = json_numbers.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The JSON Patch is not valid JSON: {exc}") from exc
    if not isinstance(ops, list):
        raise FhirError.of(400, "structure", "A JSON Patch document is a JSON array of operations")
    try:
        jsonpatch.JsonPatch(ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch document: {exc}") from exc
    return ops


def apply_json_patch(resource: dict[str, Any], ops: list[Any]) -> Any:
    """`resource` with the RFC 6902 operations applied: 400 for a malformed operation, 422 when
    a well-formed one cannot apply or a `test` fails (RFC 5789 section 2.2)."""
    patch = jsonpatch.JsonPatch(ops)
    try:
        return patch.apply(resource)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError.of(422, "processing", f"JSON Patch test failed: {exc}") from exc
    except jsonpatch.InvalidJsonPatch as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch operation: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise FhirError.of(422, "processing", f"JSON Patch cannot be applied: {exc}") from exc
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch operation: {exc}") from exc
