"""patch with JSON Patch, plain and conditional (https://hl7.org/fhir/R4/http.html#patch;
RFC 6902 applied by the `jsonpatch` library). The patched resource is validated like any write."""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.interactions.conditional import criteria_of, matching_ids
from fhir_server.interactions.update import check_if_match
from fhir_server.negotiation import check_body_type
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import gone, not_found, written
from fhir_server.routing import Route
from fhir_server.store.base import StoreTx
from fhir_server.writes import check_resource, store_resource

JSON_PATCH = "application/json-patch+json"


def _operations(req: FhirRequest) -> list[Any]:
    check_body_type(req, {JSON_PATCH})
    try:
        ops = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The JSON Patch is not valid JSON: {exc}") from exc
    if not isinstance(ops, list):
        raise FhirError.of(400, "structure", "A JSON Patch document is a JSON array of operations")
    return ops


def apply_patch(resource: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """`resource` with the RFC 6902 operations applied: 400 for a malformed patch document,
    422 when a well-formed one cannot apply or a `test` fails (RFC 5789 section 2.2)."""
    try:
        patch = jsonpatch.JsonPatch(ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch document: {exc}") from exc
    try:
        patched = patch.apply(resource)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError.of(422, "processing", f"JSON Patch test failed: {exc}") from exc
    except jsonpatch.InvalidJsonPatch as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch operation: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise FhirError.of(422, "processing", f"JSON Patch cannot be applied: {exc}") from exc
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        raise FhirError.of(400, "structure", f"Malformed JSON Patch operation: {exc}") from exc
    if not isinstance(patched, dict):
        raise FhirError.of(422, "processing", "The patch must leave a resource (a JSON object)")
    return patched


def _patch(
    ctx: Context, req: FhirRequest, tx: StoreTx, res_type: str, res_id: str, ops: list[Any]
) -> FhirResponse:
    current = tx.read(res_type, res_id)
    if current is None:
        raise not_found(res_type, res_id)
    if current.deleted:
        raise gone(current)
    check_if_match(req, current)
    assert current.body is not None
    patched = apply_patch(orjson.loads(current.body), ops)
    if patched.get("resourceType") != res_type or patched.get("id") != res_id:
        raise FhirError.of(422, "processing", "A patch may not change resourceType or id")
    check_resource(patched, res_type)
    stored = store_resource(ctx, tx, patched, res_id, current, "PATCH")
    return written(req, stored, 200, f"Patched {res_type}/{res_id}")


def patch(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PATCH [type]/[id]."""
    assert route.res_type and route.res_id
    ops = _operations(req)
    with ctx.writing() as tx:
        return _patch(ctx, req, tx, route.res_type, route.res_id, ops)


def conditional_patch(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PATCH [type]?criteria: patch the one match; 404 if none, 412 if several."""
    assert route.res_type
    ops = _operations(req)
    criteria = criteria_of(req)
    with ctx.writing() as tx:
        ids = matching_ids(ctx, tx, route.res_type, criteria)
        if len(ids) != 1:
            status = 404 if not ids else 412
            raise FhirError.of(
                status, "not-found" if not ids else "multiple-matches",
                f"'{criteria}' matches {len(ids)} {route.res_type} resources; a patch needs one",
            )
        return _patch(ctx, req, tx, route.res_type, ids[0], ops)
