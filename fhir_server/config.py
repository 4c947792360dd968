"""Server configuration: one dataclass, filled from the CLI or environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PLUGINS = ("operations.registry", "operations.visits.plugin", "smart_apps.video.plugin",
                   "hl7v2_gateway.plugin")
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

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """Defaults, then TELEFHIR_* environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        if "TELEFHIR_DB" in os.environ:
            values["db_url"] = os.environ["TELEFHIR_DB"]
        if "TELEFHIR_BASE_URL" in os.environ:
            values["public_base_url"] = os.environ["TELEFHIR_BASE_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
