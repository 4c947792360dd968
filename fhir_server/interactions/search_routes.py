"""search at type, system and compartment level (https://hl7.org/fhir/R4/search.html,
https://hl7.org/fhir/R4/http.html#search); the engine is fhir_server.search."""

from __future__ import annotations

from fhir_server.context import Context
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import Route


def search_type(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """GET [type]?… or POST [type]/_search."""
    from fhir_server.interactions.search import search

    return search(ctx, req, route.res_type, None)


def search_system(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """GET [base]?… (with _type) or POST [base]/_search."""
    from fhir_server.interactions.search import search

    return search(ctx, req, None, None)


def search_compartment(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """GET [compartment type]/[id]/[type|*]?…"""
    from fhir_server.interactions.search import search

    assert route.res_type and route.res_id
    target = None if route.compartment_type == "*" else route.compartment_type
    return search(ctx, req, target, (route.res_type, route.res_id))
