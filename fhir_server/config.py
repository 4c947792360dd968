"""Server configuration: one dataclass, filled from the CLI or environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PLUGINS = ("operations.registry", "smart_apps.plugin")
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
    auth_max_failures: int = 5  # failed sign-ins of one user before it is locked out
    auth_lockout_seconds: int = 900  # how long a lockout lasts
    auth_failure_rate: int = 20  # failed sign-ins or token requests per minute per address
    max_page_size: int = 1000
    default_page_size: int = 50
    max_body_bytes: int = 64 * 1024 * 1024
    plugins: tuple[str, ...] = DEFAULT_PLUGINS

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
        for name, var in _INT_VARS.items():
            if var in os.environ:
                values[name] = int(os.environ[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
