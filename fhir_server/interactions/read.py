"""read and vread (https://hl7.org/fhir/R4/http.html#read, #vread), with conditional read
(If-None-Match, If-Modified-Since: https://hl7.org/fhir/R4/http.html#cread). A caller
restricted to some resources (fhir_server.access) gets 403 for any other, and for a deleted
one (a deletion has no index rows to decide by)."""

from __future__ import annotations

from fhir_server.access import require_visible
from fhir_server.context import Context
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import gone, not_found, parse_etag, version_headers
from fhir_server.routing import Route
from fhir_server.timeutil import from_http_date


def read(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """The current version; 404 if unknown, 410 if deleted, 304 if the client has it."""
    assert route.res_type and route.res_id
    if route.res_type == "OperationDefinition" and ctx.operations is not None:
        definition = ctx.operations.definition(route.res_id)
        if definition is not None:  # the server's own operations, from its registry
            return FhirResponse(200, resource=definition)
    source = ctx.tx or ctx.store
    stored = source.read(route.res_type, route.res_id)
    if stored is None:
        raise not_found(route.res_type, route.res_id)
    require_visible(ctx, source, "read", route.res_type, route.res_id)
    if stored.deleted:
        raise gone(stored)
    headers = version_headers(req, stored)
    inm = req.header("if-none-match")
    if inm and any(parse_etag(t) == stored.version for t in inm.split(",")):
        return FhirResponse(304, headers=headers)
    ims = req.header("if-modified-since")
    if ims and not inm:
        since = from_http_date(ims)
        if since is not None and stored.last_updated_us // 1_000_000 * 1_000_000 <= since:
            return FhirResponse(304, headers=headers)
    return FhirResponse(200, raw=stored.body, headers=headers)


def vread(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """One version from history; 410 if that version is a deletion."""
    assert route.res_type and route.res_id and route.version is not None
    if not route.version.isdigit():
        raise not_found(route.res_type, route.res_id, route.version)
    source = ctx.tx or ctx.store
    stored = source.vread(route.res_type, route.res_id, int(route.version))
    if stored is None:
        raise not_found(route.res_type, route.res_id, route.version)
    require_visible(ctx, source, "read", route.res_type, route.res_id)
    if stored.deleted:
        raise gone(stored)
    return FhirResponse(200, raw=stored.body, headers=version_headers(req, stored))
