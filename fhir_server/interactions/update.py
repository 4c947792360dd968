"""update, update-as-create and conditional update (https://hl7.org/fhir/R4/http.html#update,
#cond-update), with If-Match for managed concurrency (#concurrency)."""

from __future__ import annotations

from typing import Any

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.interactions.conditional import criteria_of, matching_ids
from fhir_server.interactions.create import new_id
from fhir_server.negotiation import FHIR_JSON, check_body_type
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import parse_etag, written
from fhir_server.routing import Route, valid_id
from fhir_server.store.base import StoredResource, StoreTx
from fhir_server.writes import check_resource, parse_json_body, store_resource


def check_if_match(req: FhirRequest, current: StoredResource | None) -> None:
    """412 when If-Match names another version than the current one."""
    header = req.header("if-match")
    if header is None:
        return
    wanted = parse_etag(header)
    if wanted is None:
        raise FhirError.of(400, "invalid", f"If-Match '{header}' is not an ETag like W/\"3\"")
    if current is None or current.deleted or current.version != wanted:
        have = "none" if current is None or current.deleted else f'W/"{current.version}"'
        raise FhirError.of(
            412, "conflict", f"If-Match {header} does not match the current version ({have})"
        )


def update(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PUT [type]/[id]: replace, or create with the client's id (201)."""
    assert route.res_type and route.res_id
    resource = _body(req, route.res_type)
    if resource.get("id") != route.res_id:
        raise FhirError.of(
            400, "invalid",
            f"The resource id '{resource.get('id')}' must equal the id '{route.res_id}' of the URL",
            f"{route.res_type}.id",
        )
    with ctx.writing() as tx:
        return _put(ctx, req, tx, resource, route.res_id)


def conditional_update(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """PUT [type]?criteria: update the one match, create if none, 412 if several."""
    assert route.res_type
    resource = _body(req, route.res_type)
    criteria = criteria_of(req)
    with ctx.writing() as tx:
        ids = matching_ids(ctx, tx, route.res_type, criteria)
        if len(ids) > 1:
            raise FhirError.of(412, "duplicate", f"'{criteria}' matches {len(ids)} resources")
        body_id = resource.get("id")
        if ids:
            if body_id is not None and body_id != ids[0]:
                raise FhirError.of(
                    400, "invalid",
                    f"The resource id '{body_id}' differs from the matching resource '{ids[0]}'",
                )
            target = ids[0]
        else:
            if body_id is not None and not valid_id(str(body_id)):
                raise FhirError.of(400, "invalid", f"'{body_id}' is not a valid id")
            target = str(body_id) if body_id is not None else new_id()
            check_no_match_target(tx, route.res_type, target, criteria)
        return _put(ctx, req, tx, resource, target)


def check_no_match_target(tx: StoreTx, res_type: str, res_id: str, criteria: str) -> None:
    """A conditional update that matches nothing is an update-as-create with the body's id
    (https://hl7.org/fhir/R4/http.html#cond-update); if a live resource already has that id
    it does not match the criteria, and overwriting it is refused with 409, as R5 words it
    (https://hl7.org/fhir/R5/http.html#cond-update)."""
    current = tx.read(res_type, res_id)
    if current is not None and not current.deleted:
        raise FhirError.of(
            409, "conflict",
            f"No {res_type} matches '{criteria}', and {res_type}/{res_id} (the id in the body) "
            "exists without matching it; it is not overwritten",
        )


def _body(req: FhirRequest, res_type: str) -> dict[str, Any]:
    check_body_type(req, {FHIR_JSON, "application/json"})
    resource = parse_json_body(req.body)
    check_resource(resource, res_type)
    return resource


def _put(
    ctx: Context, req: FhirRequest, tx: StoreTx, resource: dict[str, Any], res_id: str
) -> FhirResponse:
    current = tx.read(resource["resourceType"], res_id)
    check_if_match(req, current)
    stored = store_resource(ctx, tx, resource, res_id, current, "PUT")
    if current is None or current.deleted:
        return written(req, stored, 201, f"Created {stored.res_type}/{stored.res_id}")
    return written(req, stored, 200, f"Updated {stored.res_type}/{stored.res_id}")
