"""The audit plugin (fhir_server.config.DEFAULT_PLUGINS): every FHIR interaction (hook
`before_response`, which the dispatcher runs for every answer, errors included) and every
security event of the authorization server (hook `security_event`) becomes an AuditEvent
(smart_apps.audit.events), durable before the answer leaves (smart_apps.audit.writer, or the
caller's own transaction when the request runs inside one, as the HL7 v2 gateway's do); and
AuditEvents are readable only by auditors and changed by no one (smart_apps.audit.access).
IHE BALP (https://profiles.ihe.net/ITI/BALP/), https://hl7.org/fhir/R4/auditevent.html."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, has_request_context
from flask.wrappers import Response

from fhir_server.access import Restriction
from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.principal import SecurityEvent
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import Route
from fhir_server.store.base import StoreTx
from resources import json_numbers
from smart_apps.audit import access
from smart_apps.audit.events import rest_event, security_audit_event
from smart_apps.audit.writer import AuditWriteFailed, AuditWriter, flush, log_event

_KEY = "smart_apps.audit"
_PENDING = "telefhir_audit_batches"
UNAUDITED_PATHS = frozenset({"metadata"})
"""Answers that hold no patient data and are not audited (the CapabilityStatement)."""


FAILED = "The audit trail could not record this request, so its answer is withheld; retry later"


def _failed() -> FhirError:
    return FhirError(500, [Issue("fatal", "exception", FAILED)])


class Auditor:
    """The hooks of one server context, around one group-commit writer."""

    def __init__(self, ctx: Context) -> None:
        self.writer = AuditWriter(ctx.store)
        self.enabled = ctx.config.audit

    def install(self, ctx: Context) -> None:
        hooks = ctx.hooks
        hooks.register("authorize", self.authorize)
        hooks.register("restrict", self.restrict)
        hooks.register("before_operation", self.operation)
        hooks.register("before_create", self.refuse_write)
        hooks.register("before_update", self.refuse_write)
        hooks.register("before_delete", self.refuse_delete)
        if self.enabled:
            hooks.register("before_response", self.record)
            hooks.register("security_event", self.record_security)

    # -- the record ---------------------------------------------------------------------------

    def record(self, ctx: Context, req: FhirRequest, resp: FhirResponse) -> None:
        """The AuditEvent of `req` and its answer, durable before the answer is sent."""
        if req.path in UNAUDITED_PATHS or not req.audited:
            return
        event = rest_event(req, resp, ctx.config.public_base_url or req.base_url)
        if ctx.tx is not None:  # an internal client's transaction: commits (or not) with it
            log_event(ctx.tx, event)
            return
        try:
            self.writer.wait(self.writer.submit(event))
        except AuditWriteFailed as exc:
            raise _failed() from exc

    def record_security(self, ctx: Context, event: SecurityEvent) -> None:
        """The AuditEvent of a security event. Inside a web request it is queued now and
        waited for after the view (`durable`): the authorization server may raise events
        while it holds a database transaction of its own."""
        resource = security_audit_event(event, ctx.config.public_base_url or "telefhir")
        if has_request_context():
            g.setdefault(_PENDING, []).append(self.writer.submit(resource))
            return
        try:
            self.writer.write([resource])
        except AuditWriteFailed as exc:
            raise _failed() from exc

    def durable(self, resp: Response) -> Response:
        """Flask after_request: the security events of this request are committed before its
        answer leaves (else 500)."""
        pending = g.pop(_PENDING, None)
        for batch in pending or ():
            try:
                self.writer.wait(batch)
            except AuditWriteFailed:
                return Response(_outcome_json(), status=500, content_type="application/json")
        return resp

    # -- access ------------------------------------------------------------------------------

    def authorize(self, ctx: Context, req: FhirRequest, route: Route) -> None:
        target = route.compartment_type if route.interaction == "search-compartment" \
            else route.res_type
        if target != access.AUDIT:
            if route.interaction.startswith(("search", "history")) and \
                    access.may_read(req.principal, "s"):
                self.index_logged(ctx)  # AuditEvents it may see among the results
            return
        if route.interaction in access.WRITE_INTERACTIONS:
            raise access.refused_change()
        letter = "r" if route.interaction in ("read", "vread", "history-instance") else "s"
        if not access.may_read(req.principal, letter):
            raise access.refused_read()
        self.index_logged(ctx)

    def index_logged(self, ctx: Context) -> None:
        """Before an auditor's read or search: every logged AuditEvent into the store."""
        with ctx.writing() as tx:
            flush(tx)

    def restrict(self, ctx: Context, req: FhirRequest, action: str,
                 out: list[Restriction]) -> None:
        if action in ("read", "search") and \
                not access.may_read(req.principal, "r" if action == "read" else "s"):
            out.append(access.hidden())

    def operation(self, ctx: Context, req: FhirRequest, call: Any) -> None:
        if call.res_type != access.AUDIT:
            return
        if call.op.affects_state:
            raise access.refused_change()
        if not access.may_read(req.principal):
            raise access.refused_read()

    def refuse_write(self, ctx: Context, tx: StoreTx, res_type: str, res_id: str,
                     resource: dict[str, Any]) -> None:
        if res_type == access.AUDIT:
            raise access.refused_change()

    def refuse_delete(self, ctx: Context, tx: StoreTx, res_type: str, res_id: str) -> None:
        if res_type == access.AUDIT:
            raise access.refused_change()


def _outcome_json() -> bytes:
    return json_numbers.dumps(operation_outcome([Issue("fatal", "exception", FAILED)]))


def auditor_of(ctx: Context) -> Auditor:
    """The context's Auditor (made on first use)."""
    a = ctx.extensions.get(_KEY)
    if a is None:
        a = ctx.extensions[_KEY] = Auditor(ctx)
    return a


QUIET_LOGGERS = ("authlib",)
"""Loggers held at INFO whatever the root level: Authlib's DEBUG messages print issued tokens
("Issue token {...}") and client credentials, which must never reach a log."""


def install(ctx: Context) -> None:
    """Register the audit hooks; keep secrets out of the logs."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level in (logging.NOTSET, logging.DEBUG):
            logger.setLevel(logging.INFO)
    auditor_of(ctx).install(ctx)


def install_web(app: Flask, ctx: Context) -> None:
    """Security events raised while serving a page or endpoint are durable before it answers."""
    app.after_request(auditor_of(ctx).durable)
