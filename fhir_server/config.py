"""Server configuration: one dataclass, filled from the CLI or environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PLUGINS = ("operations.registry", "operations.billing.eligibility",
                   "operations.visits.plugin", "smart_apps.video.plugin", "hl7v2_gateway.plugin")
"""Modules whose `install(ctx)` wires their hooks and registries into each server context, in
order (the composition root imports them by name, so fhir_server imports none of them)."""


@dataclass(frozen=True)
class Config:
    """What `create_app` needs to know."""

    db_url: str = "sqlite:///var/telefhir.db"
    base_path: str = "/fhir"
    public_base_url: str | None = None  # absolute base URL when behind a proxy
    auth: bool = False  # authorization is not built yet: the API is open
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
        if os.environ.get("TELEFHIR_BILLING_TABLES"):
            values["billing_tables"] = tuple(
                p for p in os.environ["TELEFHIR_BILLING_TABLES"].split(os.pathsep) if p)
        if os.environ.get("TELEFHIR_X12_SUBMITTER_ID"):
            values["x12_submitter_id"] = os.environ["TELEFHIR_X12_SUBMITTER_ID"]
        if os.environ.get("TELEFHIR_X12_USAGE"):
            values["x12_usage"] = os.environ["TELEFHIR_X12_USAGE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
