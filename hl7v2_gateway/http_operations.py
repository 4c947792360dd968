"""The gateway over HTTP: `$convert-hl7v2` (message in, FHIR Bundle out, nothing stored),
`$ingest-hl7v2` (stored as the MLLP listener stores it) and `$hl7v2-errors` (the error queue,
for administrators). OperationDefinitions: operations/definitions/OperationDefinition-
{convert-hl7v2,ingest-hl7v2,hl7v2-errors}.json, canonical under
https://telefhir.org/fhir/OperationDefinition/ (https://hl7.org/fhir/R4/operations.html)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue
from hl7v2_gateway import inbox
from hl7v2_gateway.apply import resolve, token
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.gateway import Gateway, check_plan
from hl7v2_gateway.mapping import map_message
from hl7v2_gateway.plan import Plan
from hl7v2_gateway.settings import GatewaySettings
from operations.parameters import Params
from operations.registry import OperationCall, operation
from resources import json_numbers

_gateways: dict[int, Gateway] = {}
_settings: GatewaySettings | None = None


def configure(settings: GatewaySettings) -> None:
    global _settings
    _settings = settings


def settings() -> GatewaySettings:
    return _settings or GatewaySettings()


def gateway_for(ctx: Context) -> Gateway:
    gw = _gateways.get(id(ctx.store))
    if gw is None:
        gw = _gateways[id(ctx.store)] = Gateway(ctx, settings())
    return gw


def plan_bundle(plan: Plan) -> dict[str, Any]:
    """The plan as a transaction Bundle: conditional creates on the identifiers, urn:uuid
    references (what $convert-hl7v2 returns)."""
    refs = {key: f"urn:uuid:{uuid.uuid4()}" for key in plan.items}
    entries = []
    for key, p in plan.items.items():
        request: dict[str, Any] = {"method": "POST", "url": p.res_type}
        if p.ident is not None:
            request["ifNoneExist"] = urlencode([("identifier", token(p.ident))])
        entries.append({"fullUrl": refs[key], "resource": resolve(p.body, refs),
                        "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _message(call: OperationCall) -> str:
    value = call.params.get("message")
    if not isinstance(value, str) or not value.strip():
        raise FhirError.of(400, "required", "The parameter 'message' (the v2 message) is empty",
                           "Parameters.parameter[message]")
    return value


def _hl7_issue(err: Hl7Error) -> Issue:
    where = f" at {err.location}" if err.location else ""
    return Issue("error", "invalid" if not err.rejects else "not-supported",
                 f"HL7 {err.code} {err.name}{where}: {err.text}",
                 (err.location,) if err.location else ())


@operation("OperationDefinition-convert-hl7v2", affects_state=False, needs=())
def convert(call: OperationCall) -> Params:
    """Map, never store."""
    try:
        msg = Message.parse(_message(call))
        plan = map_message(msg, settings())
    except Hl7Error as err:
        raise FhirError(422, [_hl7_issue(err)]) from err
    problems = check_plan(plan)
    if problems:
        raise FhirError(422, [_hl7_issue(p) for p in problems])
    return Params().add("return", plan_bundle(plan))


@operation("OperationDefinition-ingest-hl7v2", affects_state=True,
           needs=("*.cu",))
def ingest(call: OperationCall) -> Params:
    """Store as the MLLP path does, then apply now."""
    text = _message(call)
    gw = gateway_for(call.ctx)
    d, status = gw.ingest(text.encode("utf-8"), peer=call.req.remote_addr)
    r = d.received
    out = Params().add("ack", r.ack or "").add("code", r.ack_code).add("status", status)
    if r.row_id is not None:
        out.add("id", r.row_id)
    out.add("duplicate", r.duplicate)
    row = inbox.get(call.ctx.store, r.row_id) if r.row_id is not None else None
    if row is not None and row.reason:
        out.add("reason", row.reason)
    if row is not None and row.result:
        for ref in json_numbers.loads(row.result).values():
            if not str(ref).startswith("urn:"):
                out.add("reference", {"reference": ref})
    return out


def _is_admin(call: OperationCall) -> bool:
    p = call.req.principal
    if p is None or p.kind == "anonymous":
        return not call.ctx.config.auth  # an open server (serve --no-auth) has no roles
    if p.kind == "internal" or p.admin:
        return True
    return p.kind == "client" and any(s.startswith("system/") for s in p.scopes)


@operation("OperationDefinition-hl7v2-errors", affects_state=False, needs=("*.rs",))
def errors(call: OperationCall) -> Params:
    """The error queue, for administrators only."""
    if not _is_admin(call):
        raise FhirError.of(403, "forbidden", "$hl7v2-errors is for administrators (an admin "
                                             "user or a client with system scopes)")
    count = min(int(call.params.get("count") or 100), 1000)
    after = int(call.params.get("after") or 0)
    inbox.ensure(call.ctx.store)
    out = Params()
    for row in inbox.errors(call.ctx.store, count, after):
        part = Params()
        for k, v in row.summary().items():
            if v is not None:
                part.add(k, v)
        part.add("message", row.raw)
        out.add("entry", part)
    return out
