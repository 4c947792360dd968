"""JSON Merge Patch (RFC 7396, https://www.rfc-editor.org/rfc/rfc7396): the patch is a partial
resource; its members replace the resource's, `null` removes one, objects merge recursively and
arrays are replaced whole. This is what clients such as fhirpy send with `PATCH` as
`application/json`."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import FhirError
from resources import json_numbers


def parse_merge_patch(body: bytes) -> dict[str, Any]:
    """The merge patch object, or 400. A patch that is not an object would replace the whole
    resource with a non-resource (RFC 7396 section 2), so only objects are taken."""
    if not body.strip():
        raise FhirError.of(400, "required", "The PATCH body is empty; a merge patch is an object")
    try:
        value = json_numbers.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The merge patch is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FhirError.of(
            400, "structure",
            "A JSON Merge Patch of a resource is a JSON object (RFC 7396); a JSON Patch array "
            "is sent as application/json-patch+json",
        )
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """MergePatch(Target, Patch) exactly as RFC 7396 section 2 defines it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = merge_patch(out.get(name), value)
    return out
