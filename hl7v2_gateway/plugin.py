"""Plugin entry point (fhir_server.config.DEFAULT_PLUGINS): the outbox hooks and the HTTP
operations of the HL7 v2 gateway in every server context, configured from
TELEFHIR_HL7_CONFIG."""

from __future__ import annotations

from fhir_server.context import Context
from hl7v2_gateway import http_operations
from hl7v2_gateway.outbox import OutboxHooks
from hl7v2_gateway.settings import load_settings


def install(ctx: Context) -> None:
    settings = load_settings()
    http_operations.configure(settings)
    OutboxHooks(settings).install(ctx)
