"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete, #cdelete).
Deletion is logical: a deletion version is recorded and a later read answers 410 Gone."""

from __future__ import annotations

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.interactions.conditional import criteria_of, matching_ids
from fhir_server.interactions.update import check_if_match
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import etag
from fhir_server.routing import Route
from fhir_server.writes import delete_resource


def _answer(req: FhirRequest, message: str, version: int | None) -> FhirResponse:
    headers = {"ETag": etag(version)} if version is not None else {}
    if req.prefer.get("return", "").lower() == "operationoutcome":
        oo = operation_outcome([Issue("information", "informational", message)])
        return FhirResponse(200, resource=oo, headers=headers)
    return FhirResponse(204, headers=headers)


def delete(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """DELETE [type]/[id]: 204. On a deleted resource, or an id that never existed, nothing
    changes and the answer is 204 too: "Upon successful deletion, or if the resource does not
    exist at all, the server should return ... 204 No Content" (#delete)."""
    assert route.res_type and route.res_id
    with ctx.writing() as tx:
        current = tx.read(route.res_type, route.res_id)
        check_if_match(req, current)  # 412 on a stale version, a deleted or unknown resource
        if current is None:
            return _answer(req, f"{route.res_type}/{route.res_id} does not exist; nothing to "
                                "delete", None)
        if current.deleted:
            return _answer(req, f"{route.res_type}/{route.res_id} was already deleted",
                           current.version)
        stored = delete_resource(ctx, tx, current)
    return _answer(req, f"Deleted {route.res_type}/{route.res_id}", stored.version)


def conditional_delete(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """DELETE [type]?criteria: delete the one match (204 if none); 412 if several match."""
    assert route.res_type
    criteria = criteria_of(req)
    with ctx.writing() as tx:
        ids = matching_ids(ctx, tx, route.res_type, criteria)
        if len(ids) > 1:
            raise FhirError.of(
                412, "multiple-matches",
                f"'{criteria}' matches {len(ids)} {route.res_type} resources; refine it",
            )
        if not ids:
            return _answer(req, f"No {route.res_type} matches '{criteria}'; nothing deleted", None)
        current = tx.read(route.res_type, ids[0])
        assert current is not None
        check_if_match(req, current)  # If-Match applies to the matched resource
        stored = delete_resource(ctx, tx, current)
    return _answer(req, f"Deleted {route.res_type}/{stored.res_id}", stored.version)
