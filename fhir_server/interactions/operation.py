"""`[base]/$op`, `[base]/[type]/$op`, `[base]/[type]/[id]/$op`
(https://hl7.org/fhir/R4/operations.html): handed to the operations registry."""

from __future__ import annotations

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import Route


def operation(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """Invoke the operation named in the route."""
    if ctx.operations is None:
        raise FhirError.of(404, "not-supported", f"Operation ${route.operation} is not known "
                           "to this server (no operations are installed)")
    return ctx.operations.invoke(ctx, req, route)
