"""The framework-free front door: FhirRequest in, FhirResponse out.

Routes (https://hl7.org/fhir/R4/http.html), negotiates the format (JSON or XML: an XML body is
read into JSON here and `render` writes XML answers, so interactions only see JSON), runs the
request_received and before_response hooks and turns every failure into an
OperationOutcome with its status; an unexpected exception is a 500 OperationOutcome,
never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.formats import json_request, render_xml
from fhir_server.interactions.registry import interactions
from fhir_server.negotiation import FHIR_JSON, body_is_xml, is_xml, pretty, response_type
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import route

log = logging.getLogger("telefhir")

CapabilityBuilder = Callable[[FhirRequest], dict[str, Any]]
FORM = "application/x-www-form-urlencoded"


class Dispatcher:
    """Handles requests for one server context."""

    def __init__(self, ctx: Context, capabilities: CapabilityBuilder) -> None:
        self.ctx = ctx
        self._capabilities = capabilities

    def handle(self, req: FhirRequest) -> FhirResponse:
        """Answer `req`; never raises."""
        media = FHIR_JSON
        try:
            media = response_type(req)
            if body_is_xml(req):
                req = json_request(req)
            resp = self._handle(req)
        except FhirError as err:
            resp = FhirResponse(err.status, resource=err.outcome(), headers=dict(err.headers))
        except Exception:
            log.exception("unhandled error for %s /%s", req.method, req.path)
            resp = FhirResponse(
                500,
                resource=operation_outcome(
                    [Issue("fatal", "exception", "Internal server error; the request was not "
                           "completed and nothing was written")]
                ),
            )
        if resp.raw is not None or resp.resource is not None:
            resp.headers["Content-Type"] = f"{media}; charset=utf-8"
        try:
            self.ctx.hooks.run("before_response", self.ctx, req, resp)
        except FhirError as err:
            resp = FhirResponse(err.status, resource=err.outcome(), headers=dict(err.headers))
            resp.headers["Content-Type"] = f"{media}; charset=utf-8"
        return resp

    def _handle(self, req: FhirRequest) -> FhirResponse:
        r = route(req.method, req.path)
        self.ctx.hooks.run("request_received", self.ctx, req)
        if r.interaction == "capabilities":
            return FhirResponse(200, resource=self._capabilities(req))
        if r.interaction.startswith("search") and req.method == "POST":
            req = _with_form_params(req)
        return interactions()[r.interaction].handler(self.ctx, req, r)


def _with_form_params(req: FhirRequest) -> FhirRequest:
    """POST [type]/_search carries its parameters form-encoded in the body
    (https://hl7.org/fhir/R4/http.html#search)."""
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if req.body.strip() and ctype != FORM:
        raise FhirError.of(415, "not-supported", f"POST _search takes {FORM}, not '{ctype}'")
    try:
        extra = parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise FhirError.of(400, "invalid", "The form body is not UTF-8") from exc
    return FhirRequest(req.method, req.path, [*req.query, *extra], req.headers, b"", req.base_url)


def render(req: FhirRequest, resp: FhirResponse) -> bytes:
    """The response body bytes (empty for HEAD and bodiless answers) in the media type of its
    Content-Type; _pretty indents. An answer XML cannot carry becomes an OperationOutcome
    (`resp.status` and headers change: call this before reading them)."""
    if req.method == "HEAD":
        return b""
    ctype = resp.headers.get("Content-Type")
    if ctype and is_xml(ctype.split(";")[0]) and (resp.raw is not None or
                                                  resp.resource is not None):
        return render_xml(resp, pretty(req))
    if resp.raw is not None:
        if pretty(req):
            return orjson.dumps(orjson.loads(resp.raw), option=orjson.OPT_INDENT_2)
        return resp.raw
    if resp.resource is not None:
        return orjson.dumps(resp.resource, option=orjson.OPT_INDENT_2 if pretty(req) else 0)
    return b""
