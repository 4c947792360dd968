"""Hook points: the one documented list of places where cross-cutting work plugs in.

Modelled on HAPI FHIR interceptor pointcuts. A hook raising FhirError aborts the request
(and, for before_* write hooks, the whole database transaction). While a request is served,
`ctx.request` is that request (its principal says who is asking), so write hooks know their
caller too.

- request_received(ctx, req)          (authentication: a hook sets req.principal, or raises 401)
- authorize(ctx, req, route)           (may this caller perform this interaction at all? raise
                                       401/403. Run by the dispatcher for every request after
                                       request_received, and once per Bundle entry, before any
                                       entry of a transaction runs)
- restrict(ctx, req, action, out)      (append fhir_server.access.Restriction objects limiting
                                       which resources `req` may see or change for `action`
                                       (read, search, create, update, delete); all apply. The
                                       search engine, history, read/vread and the write path
                                       apply them: fhir_server.access)
- before_create / before_update(ctx, tx, res_type, res_id, resource)
- after_create / after_update(ctx, tx, stored)           (same transaction as the write)
- before_delete(ctx, tx, res_type, res_id), after_delete(ctx, tx, stored)
- before_operation(ctx, req, call)    (call: operations.registry.OperationCall, parameters
                                       parsed; `call.op.needs` says what it requires)
- before_response(ctx, req, resp)      (run for every answer the dispatcher gives, failures
                                       included: a 401 from request_received, a 403 from
                                       authorize, a 404, a 500; the audit trail records each
                                       here. resp.resource / resp.raw are JSON even when the
                                       client asked for XML: XML is written after this hook,
                                       and an XML request body has been read into JSON before
                                       request_received)
- capability_statement(ctx, req, statement)   (a copy of the generated CapabilityStatement
                                       with its own `rest` list and rest[0] dict: a hook may
                                       set keys such as rest[0]["security"])
- security_event(ctx, event)           (a fhir_server.principal.SecurityEvent from the
                                       authorization server: sign-in, token, refresh, revoke)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

HOOK_POINTS = (
    "request_received",
    "authorize",
    "restrict",
    "before_create",
    "after_create",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
    "before_operation",
    "before_response",
    "capability_statement",
    "security_event",
)


class Hooks:
    """Registered callables per hook point, run in registration order."""

    def __init__(self) -> None:
        self._fns: dict[str, list[Callable[..., Any]]] = defaultdict(list)

    def register(self, point: str, fn: Callable[..., Any]) -> None:
        """Add `fn` at `point` (one of HOOK_POINTS)."""
        if point not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {point!r}; known: {', '.join(HOOK_POINTS)}")
        self._fns[point].append(fn)

    def run(self, point: str, *args: Any) -> None:
        """Call every function registered at `point`."""
        for fn in self._fns.get(point, ()):
            fn(*args)
