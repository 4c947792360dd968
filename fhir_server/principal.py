"""Who is asking: the identity that travels with every request.

The SMART layer (smart_apps) turns a bearer token into a Principal on the request; internal
clients (the HL7 v2 gateway, the claim engine) act as named principals of their own, so their
writes are authorised and audited like anyone's. Enforcement and the AuditEvent writer are hooks
that read it (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    `kind` is "user" (a person signed in through an app), "client" (a backend-services app with
    no user), "internal" (a component of telefhir itself) or "anonymous" (an open server,
    `serve --no-auth`). `scopes` are the granted SMART scopes, as strings, unparsed."""

    kind: str
    client_id: str | None = None
    username: str | None = None
    fhir_user: str | None = None  # "Practitioner/123", "Patient/9"
    scopes: tuple[str, ...] = ()
    patient: str | None = None  # launch context: the Patient id
    encounter: str | None = None  # launch context: the Encounter id
    admin: bool = False
    token_id: str | None = None  # the access token's jti, for audit and revocation

    @property
    def display(self) -> str:
        """A short name for logs and audit: user, else client, else kind."""
        return self.username or self.client_id or self.kind


ANONYMOUS = Principal(kind="anonymous")


def internal(name: str) -> Principal:
    """The named principal of a component of telefhir (e.g. "hl7v2-gateway"), with every
    system scope."""
    return Principal(kind="internal", client_id=f"telefhir-{name}", scopes=("system/*.cruds",))


@dataclass(frozen=True)
class SecurityEvent:
    """Something the audit trail must record that is not a FHIR interaction: a sign-in (or a
    failed one), a token issued, refreshed, introspected or revoked, a launch, a lockout.
    Raised by the authorization server through the `security_event` hook
    (https://hl7.org/fhir/R4/valueset-audit-event-type.html, IHE BALP).

    `action` is a short code such as "login", "token", "refresh", "revoke", "introspect",
    "launch"; `outcome` is "success" or "failure"; `detail` holds what else is worth recording
    (never a secret, token or password)."""

    action: str
    outcome: str
    principal: Principal | None = None
    client_id: str | None = None
    username: str | None = None
    remote_addr: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
