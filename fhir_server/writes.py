"""The write path shared by create, update, patch and Bundle entries: parse, validate,
stamp meta (https://hl7.org/fhir/R4/resource.html#Meta), store, run hooks; a caller restricted
to some resources (fhir_server.access) may change only those, and only into those."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.access import require_visible
from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue
from fhir_server.store.base import StoredResource, StoreTx, VersionConflict
from fhir_server.timeutil import now_us, to_instant
from resources import json_numbers
from resources.validation import validate_resource


def parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 400."""
    if not body.strip():
        raise FhirError.of(400, "required", "The request body is empty; a resource is required")
    try:
        value = json_numbers.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    return value


def check_resource(resource: dict[str, Any], res_type: str | None) -> None:
    """400 unless `resource` is a structurally valid R4 resource of `res_type`
    (https://hl7.org/fhir/R4/validation.html)."""
    actual = resource.get("resourceType")
    if res_type is not None and actual != res_type:
        raise FhirError.of(
            400, "invalid",
            f"resourceType '{actual}' does not match the type '{res_type}' of the URL",
            "resourceType",
        )
    problems = validate_resource(resource)
    errors = [p for p in problems if p.severity in ("error", "fatal")]
    if errors:
        raise FhirError(
            400,
            [Issue(p.severity, p.code, p.diagnostics, (p.expression,) if p.expression else ())
             for p in problems],
        )


def stamp(resource: dict[str, Any], res_id: str, version: int, updated_us: int) -> dict[str, Any]:
    """The resource as stored: id and meta.versionId/lastUpdated set by the server, first."""
    # versionId and lastUpdated first: the order of Meta's definition (and of its XML)
    meta = {"versionId": str(version), "lastUpdated": to_instant(updated_us)}
    for k, v in (resource.get("meta") or {}).items():
        if k not in meta:
            meta[k] = v
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for k, v in resource.items():
        if k not in out:
            out[k] = v
    return out


def store_resource(
    ctx: Context,
    tx: StoreTx,
    resource: dict[str, Any],
    res_id: str,
    current: StoredResource | None,
    method: str,
) -> StoredResource:
    """Write `resource` (already validated) as the next version after `current`."""
    res_type = resource["resourceType"]
    version = (current.version if current else 0) + 1
    creating = current is None or current.deleted
    if not creating:  # the caller may change only what it may see (fhir_server.access)
        require_visible(ctx, tx, "update", res_type, res_id)
    ctx.hooks.run("before_create" if creating else "before_update", ctx, tx, res_type, res_id,
                  resource)
    updated = now_us()
    stamped = stamp(resource, res_id, version, updated)
    body = json_numbers.dumps(stamped)
    try:
        stored = tx.put(res_type, res_id, stamped, body, version, method, updated)
    except VersionConflict as exc:
        raise FhirError.of(409, "conflict", f"Version conflict: {exc}; read it again") from exc
    # ... and what it writes must stay inside what it may change (the index rows are written)
    require_visible(ctx, tx, "create" if creating else "update", res_type, res_id)
    ctx.hooks.run("after_create" if creating else "after_update", ctx, tx, stored)
    return stored


def delete_resource(ctx: Context, tx: StoreTx, current: StoredResource) -> StoredResource:
    """Record the deletion of `current` (https://hl7.org/fhir/R4/http.html#delete)."""
    require_visible(ctx, tx, "delete", current.res_type, current.res_id)
    ctx.hooks.run("before_delete", ctx, tx, current.res_type, current.res_id)
    try:
        stored = tx.delete(current.res_type, current.res_id, current.version + 1, now_us())
    except VersionConflict as exc:
        raise FhirError.of(409, "conflict", f"Version conflict: {exc}") from exc
    ctx.hooks.run("after_delete", ctx, tx, stored)
    return stored
