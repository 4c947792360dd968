"""create and conditional create (https://hl7.org/fhir/R4/http.html#create, #ccreate)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

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


# Parameters that only shape the answer; the others of `POST [type]?...` are search criteria.
_ANSWER_PARAMS = {"_format", "_pretty", "_summary", "_elements"}


def create_criteria(query: list[tuple[str, str]], header: str | None) -> str | None:
    """The criteria of a conditional create (https://hl7.org/fhir/R4/http.html#ccreate): the
    If-None-Exist header or, when it is absent, the search parameters of `POST [type]?criteria`
    (how fhirpy's get_or_create() and Aidbox put them); None for a plain create."""
    if header is not None and header.strip():
        return header
    pairs = [(k, v) for k, v in query if k not in _ANSWER_PARAMS]
    return urlencode(pairs) if pairs else None


def create(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """Store a new resource under a server-assigned id; the body's id is ignored.
    With criteria (If-None-Exist, or `POST [type]?criteria`), an existing single match is
    returned instead (200) and several matches are a 412."""
    assert route.res_type
    check_body_type(req, {FHIR_JSON, "application/json"})
    resource = parse_json_body(req.body)
    check_resource(resource, route.res_type)
    cond = create_criteria(req.query, req.header("if-none-exist"))
    with ctx.writing() as tx:
        if cond:
            ids = matching_ids(ctx, tx, route.res_type, cond)
            if len(ids) > 1:
                raise FhirError.of(
                    412, "duplicate",
                    f"The conditional create criteria '{cond}' match {len(ids)} resources; "
                    "they must match one or none",
                )
            if ids:
                existing = tx.read(route.res_type, ids[0])
                assert existing is not None
                return written(req, existing, 200, "A matching resource exists; nothing created")
        stored = store_resource(ctx, tx, resource, new_id(), None, "POST")
    return written(req, stored, 201, f"Created {stored.res_type}/{stored.res_id}")
