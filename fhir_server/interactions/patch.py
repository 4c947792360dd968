"""patch, plain and conditional (https://hl7.org/fhir/R4/http.html#patch), in JSON Patch,
FHIRPath Patch and JSON Merge Patch (fhir_server.patching.formats picks one by Content-Type).

The patched resource is validated like any update; a patch that would leave an invalid
resource, or change its type or id, is refused with 422 (RFC 5789 section 2.2: "attempts to
modify a resource in a way that would cause the resource to become invalid"), naming the
element at fault. If-Match is honoured (https://hl7.org/fhir/R4/http.html#concurrency)."""

from __future__ import annotations

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.conditional import criteria_of, matching_ids
from fhir_server.interactions.update import check_if_match
from fhir_server.patching.formats import Patch, parse_patch
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import gone, not_found, written
from fhir_server.routing import Route
from fhir_server.store.base import StoreTx
from fhir_server.writes import check_resource, store_resource
from resources import json_numbers


def _patch_of(req: FhirRequest) -> Patch:
    return parse_patch(req.header("content-type"), req.body)


def _patch(
    ctx: Context, req: FhirRequest, tx: StoreTx, res_type: str, res_id: str, patch: Patch
) -> FhirResponse:
    current = tx.read(res_type, res_id)
    if current is None:
        raise not_found(res_type, res_id)
    if current.deleted:
        raise gone(current)
    check_if_match(req, current)
    assert current.body is not None
    patched = patch.apply(json_numbers.loads(current.body))
    check_patched(patched, res_type, res_id, patch.format)
    stored = store_resource(ctx, tx, patched, res_id, current, "PATCH")
    return written(req, stored, 200, f"Patched {res_type}/{res_id}")


def check_patched(patched: object, res_type: str, res_id: str, fmt: str) -> None:
    """422 unless the patch left a valid resource of the same type and id."""
    if not isinstance(patched, dict):
        raise FhirError.of(422, "processing", f"The {fmt} must leave a resource (a JSON object)")
    if patched.get("resourceType") != res_type:
        raise FhirError.of(422, "processing", f"A patch may not change resourceType "
                                              f"('{res_type}' to {patched.get('resourceType')!r})",
                           "resourceType")
    if patched.get("id") != res_id:
        raise FhirError.of(422, "processing", f"A patch may not change the id ('{res_id}' to "
                                              f"{patched.get('id')!r})", f"{res_type}.id")
    try:
        check_resource(patched, res_type)
    except FhirError as err:
        raise FhirError(422, [
            Issue(i.severity, i.code, f"The patched resource would not be valid: "
                                      f"{i.diagnostics}", i.expression)
            for i in err.issues
        ]) from err


def patch(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PATCH [type]/[id]."""
    assert route.res_type and route.res_id
    doc = _patch_of(req)
    with ctx.writing() as tx:
        return _patch(ctx, req, tx, route.res_type, route.res_id, doc)


def conditional_patch(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PATCH [type]?criteria: patch the one match; 404 if none, 412 if several."""
    assert route.res_type
    doc = _patch_of(req)
    criteria = criteria_of(req)
    with ctx.writing() as tx:
        ids = matching_ids(ctx, tx, route.res_type, criteria)
        if len(ids) != 1:
            status = 404 if not ids else 412
            raise FhirError.of(
                status, "not-found" if not ids else "multiple-matches",
                f"'{criteria}' matches {len(ids)} {route.res_type} resources; a patch needs one",
            )
        return _patch(ctx, req, tx, route.res_type, ids[0], doc)
