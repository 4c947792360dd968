"""Server configuration: one dataclass, filled from the CLI or environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PLUGINS = ("operations.registry", "smart_apps.plugin", "operations.billing.eligibility",
                   "operations.visits.plugin", "smart_apps.video.plugin", "hl7v2_gateway.plugin",
                   "smart_apps.audit.plugin")
"""Modules whose `install(ctx)` wires their hooks and registries into each server context, in
order (the composition root imports them by name, so fhir_server imports none of them)."""


_INT_VARS = {
    "access_token_seconds": "TELEFHIR_ACCESS_TOKEN_SECONDS",
    "refresh_token_seconds": "TELEFHIR_REFRESH_TOKEN_SECONDS",
    "auth_max_failures": "TELEFHIR_AUTH_MAX_FAILURES",
    "auth_lockout_seconds": "TELEFHIR_AUTH_LOCKOUT_SECONDS",
    "auth_failure_rate": "TELEFHIR_AUTH_FAILURE_RATE",
}


@dataclass(frozen=True)
class Config:
    """What `create_app` needs to know."""

    db_url: str = "sqlite:///var/telefhir.db"
    base_path: str = "/fhir"
    public_base_url: str | None = None  # absolute base URL when behind a proxy
    # SMART on FHIR authorization (smart_apps): every FHIR request but /metadata needs a bearer
    # token. False: an open API (`serve --no-auth`), tokens are still read for the audit trail.
    auth: bool = True
    access_token_seconds: int = 3600  # lifetime of access tokens (and id_tokens)
    refresh_token_seconds: int = 30 * 86400  # lifetime of refresh tokens (offline_access)
    # the audit trail (smart_apps.audit): an AuditEvent for every interaction and sign-in.
    # False (TELEFHIR_AUDIT=0) only to measure its cost: reading AuditEvents stays restricted
    audit: bool = True
    auth_max_failures: int = 5  # failed sign-ins of one user before it is locked out
    auth_lockout_seconds: int = 900  # how long a lockout lasts
    auth_failure_rate: int = 20  # failed sign-ins or token requests per minute per address
    max_page_size: int = 1000
    default_page_size: int = 50
    max_body_bytes: int = 64 * 1024 * 1024
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    billing_tables: tuple[str, ...] = ()  # extra folders of payer fee/rule tables (JSON)
    x12_submitter_id: str | None = None  # ISA06/GS02/1000A id; default: the billing NPI
    x12_usage: str = "P"  # ISA15: P production, T test

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """Defaults, then TELEFHIR_* environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        if "TELEFHIR_DB" in os.environ:
            values["db_url"] = os.environ["TELEFHIR_DB"]
        if "TELEFHIR_BASE_URL" in os.environ:
            values["public_base_url"] = os.environ["TELEFHIR_BASE_URL"]
        if "TELEFHIR_AUTH" in os.environ:
            values["auth"] = os.environ["TELEFHIR_AUTH"].lower() not in ("0", "false", "no")
        if "TELEFHIR_AUDIT" in os.environ:
            values["audit"] = os.environ["TELEFHIR_AUDIT"].lower() not in ("0", "false", "no")
        for name, var in _INT_VARS.items():
            if var in os.environ:
                values[name] = int(os.environ[var])
        if os.environ.get("TELEFHIR_BILLING_TABLES"):
            values["billing_tables"] = tuple(
                p for p in os.environ["TELEFHIR_BILLING_TABLES"].split(os.pathsep) if p)
        if os.environ.get("TELEFHIR_X12_SUBMITTER_ID"):
            values["x12_submitter_id"] = os.environ["TELEFHIR_X12_SUBMITTER_ID"]
        if os.environ.get("TELEFHIR_X12_USAGE"):
            values["x12_usage"] = os.environ["TELEFHIR_X12_USAGE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
