"""The framework-free front door: FhirRequest in, FhirResponse out.

Routes (https://hl7.org/fhir/R4/http.html), negotiates the format (JSON or XML: an XML body is
read into JSON first and an XML answer is written last, so interactions only see JSON), runs the
request_received and before_response hooks and turns every failure into an
OperationOutcome with its status; an unexpected exception is a 500 OperationOutcome,
never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.formats import as_xml, json_request
from fhir_server.interactions.registry import interactions
from fhir_server.negotiation import FHIR_JSON, body_is_xml, is_xml, pretty, response_type
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import route
from resources import json_numbers

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
            unacceptable: FhirError | None = None
            try:
                media = response_type(req)
            except FhirError as err:
                # A read-only request whose Accept names no FHIR format may still be answered
                # by an operation with a body of its own (Claim/$export-837p gives X12).
                if err.status != 406 or req.method not in ("GET", "HEAD"):
                    raise
                unacceptable = err
            if body_is_xml(req):
                req = json_request(req)
            resp = self._handle(req)
            if unacceptable is not None and not own_media(resp):
                raise unacceptable
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
        fhir_body = (resp.raw is not None or resp.resource is not None) and not own_media(resp)
        if fhir_body:
            resp.headers["Content-Type"] = f"{media}; charset=utf-8"
        try:
            self.ctx.hooks.run("before_response", self.ctx, req, resp)
        except FhirError as err:
            resp = FhirResponse(err.status, resource=err.outcome(), headers=dict(err.headers))
            resp.headers["Content-Type"] = f"{media}; charset=utf-8"
            fhir_body = True
        if fhir_body and is_xml(media) and req.method != "HEAD":
            resp = as_xml(resp, pretty(req))  # after the hooks: they see JSON
        return resp

    def _handle(self, req: FhirRequest) -> FhirResponse:
        r = route(req.method, req.path)
        self.ctx.hooks.run("request_received", self.ctx, req)
        if r.interaction.startswith("search") and req.method == "POST":
            req = _with_form_params(req)
        ctx = self.ctx.serving(req)
        ctx.hooks.run("authorize", ctx, req, r)
        if r.interaction == "capabilities":
            return FhirResponse(200, resource=self._capabilities(req))
        return interactions()[r.interaction].handler(ctx, req, r)


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
    return replace(req, query=[*req.query, *extra], body=b"", restrictions={})


def own_media(resp: FhirResponse) -> bool:
    """Whether `resp` is a non-JSON body that carries its own Content-Type (an operation such
    as `$export-837p` answering `application/edi-x12`): it is sent as it is, never
    re-serialised or given the negotiated FHIR media type. Errors are always FHIR
    OperationOutcomes (https://hl7.org/fhir/R4/operations.html#response)."""
    ctype = resp.headers.get("Content-Type")
    return resp.resource is None and resp.raw is not None and ctype is not None and \
        "json" not in ctype.split(";")[0]


def render(req: FhirRequest, resp: FhirResponse) -> bytes:
    """The response body bytes (empty for HEAD and bodiless answers); _pretty indents JSON
    (an XML answer was written, indented or not, by `Dispatcher.handle`)."""
    if req.method == "HEAD":
        return b""
    if resp.raw is not None:
        if pretty(req) and not own_media(resp):
            return json_numbers.dumps(json_numbers.loads(resp.raw), option=orjson.OPT_INDENT_2)
        return resp.raw
    if resp.resource is not None:
        return json_numbers.dumps(resp.resource, option=orjson.OPT_INDENT_2 if pretty(req) else 0)
    return b""
