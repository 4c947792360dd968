"""Who may see AuditEvents, and that nobody changes them.

The audit trail records who read which patient's data, so it is itself sensitive: it is
readable only with a scope that names AuditEvent in the system context
(`system/AuditEvent.rs`, a backend service such as a SIEM collector) or by a user with the
admin flag (`telefhir users add --admin`) whose token has a `user/` scope with read or search on
AuditEvent (`user/AuditEvent.rs`, or `user/*.rs`). Wildcard `system/*` scopes (bulk data
clients, internal components) do not reach it. For everyone else AuditEvents are hidden from
every result (search, system search, history, _include/_revinclude, compartments): a
fhir_server.access Restriction that leaves out the type.

Nothing changes an AuditEvent through the API (create, update, patch, delete, also inside a
Bundle or through an operation that writes, such as $meta-add): 405 with an OperationOutcome
(https://hl7.org/fhir/R4/auditevent.html#6.4.4.1: "AuditEvents are not to be changed").
IHE BALP, https://profiles.ihe.net/ITI/BALP/."""

from __future__ import annotations

from functools import lru_cache

from fhir_server.access import Grant, Restriction
from fhir_server.errors import FhirError
from fhir_server.principal import Principal
from resources.types import RESOURCE_TYPES
from smart_apps.scopes import resource_scopes

AUDIT = "AuditEvent"
READ_INTERACTIONS = frozenset({"read", "vread", "history-instance", "search-type",
                               "history-type"})
WRITE_INTERACTIONS = frozenset({"create", "update", "conditional-update", "patch",
                                "conditional-patch", "delete", "conditional-delete"})
HIDDEN_REASON = ("AuditEvents are readable only with the system/AuditEvent.rs scope or by an "
                 "administrator")


def may_read(p: Principal | None, letter: str = "r") -> bool:
    """Whether `p` may read (`r`) or search (`s`) AuditEvents."""
    if p is None:
        return False
    return _may_read(p.scopes, p.admin and p.kind == "user", letter)


@lru_cache(maxsize=1024)
def _may_read(scopes: tuple[str, ...], admin: bool, letter: str) -> bool:
    for s in resource_scopes(scopes):
        if letter not in s.perms:
            continue
        if s.context == "system" and s.res_type == AUDIT:
            return True
        if admin and s.context == "user" and s.covers(AUDIT):
            return True
    return False


def refused_change() -> FhirError:
    """405 for any change to an AuditEvent."""
    return FhirError.of(405, "not-supported",
                        "AuditEvents are written by the server only and are never changed or "
                        "deleted")


def refused_read() -> FhirError:
    """403 for a direct read or search of AuditEvents without the right to."""
    return FhirError.of(403, "forbidden", HIDDEN_REASON)


@lru_cache(maxsize=1)
def hidden() -> Restriction:
    """Every resource but AuditEvents (a Restriction: fhir_server.access)."""
    return Restriction((Grant(frozenset(RESOURCE_TYPES) - {AUDIT}),), reason=HIDDEN_REASON)
