"""Hook points: the one documented list of places where cross-cutting work plugs in.

Modelled on HAPI FHIR interceptor pointcuts. A hook raising FhirError aborts the request
(and, for before_* write hooks, the whole database transaction).

- request_received(ctx, req)
- before_create / before_update(ctx, tx, res_type, res_id, resource)
- after_create / after_update(ctx, tx, stored)           (same transaction as the write)
- before_delete(ctx, tx, res_type, res_id), after_delete(ctx, tx, stored)
- before_operation(ctx, req, call)    (call: operations.registry.OperationCall, parameters
                                       parsed; `call.op.needs` says what it requires)
- before_response(ctx, req, resp)      (resp.resource / resp.raw are JSON even when the client
                                       asked for XML: XML is written after this hook, and an
                                       XML request body has been read into JSON before
                                       request_received)
- security_event(ctx, event)           (a fhir_server.principal.SecurityEvent from the
                                       authorization server: sign-in, token, refresh, revoke)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

HOOK_POINTS = (
    "request_received",
    "before_create",
    "after_create",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
    "before_operation",
    "before_response",
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
