"""create and conditional create (https://hl7.org/fhir/R4/http.html#create, #ccreate)."""

from __future__ import annotations

import uuid

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.interactions.conditional import matching_ids
from fhir_server.negotiation import FHIR_JSON, check_body_type
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import written
from fhir_server.routing import Route
from fhir_server.writes import check_resource, parse_json_body, store_resource


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


# Parameters that only shape the answer; anything else on POST [type] is refused.
_ANSWER_PARAMS = {"_format", "_pretty", "_summary", "_elements"}


def _refuse_criteria_in_url(req: FhirRequest) -> None:
    """R4 create takes no search criteria in the URL (https://hl7.org/fhir/R4/http.html#create);
    conditional create puts them in If-None-Exist (#ccreate). Some clients (fhirpy's
    get_or_create) send `POST [type]?criteria` meaning a conditional create: ignoring the
    criteria would silently make a duplicate, so it is a 400 that says what to do instead."""
    extra = sorted({k for k, _ in req.query if k not in _ANSWER_PARAMS})
    if extra:
        raise FhirError.of(
            400, "not-supported",
            f"create takes no URL parameters ({', '.join(extra)}); for a conditional create "
            "send the criteria in the If-None-Exist header",
        )


def create(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """Store a new resource under a server-assigned id; the body's id is ignored.
    With If-None-Exist, an existing single match is returned instead (200)."""
    assert route.res_type
    _refuse_criteria_in_url(req)
    check_body_type(req, {FHIR_JSON, "application/json"})
    resource = parse_json_body(req.body)
    check_resource(resource, route.res_type)
    cond = req.header("if-none-exist")
    with ctx.writing() as tx:
        if cond:
            ids = matching_ids(ctx, tx, route.res_type, cond)
            if len(ids) > 1:
                raise FhirError.of(
                    412, "duplicate",
                    f"If-None-Exist '{cond}' matches {len(ids)} resources; it must match one",
                )
            if ids:
                existing = tx.read(route.res_type, ids[0])
                assert existing is not None
                return written(req, existing, 200, "A matching resource exists; nothing created")
        stored = store_resource(ctx, tx, resource, new_id(), None, "POST")
    return written(req, stored, 201, f"Created {stored.res_type}/{stored.res_id}")
