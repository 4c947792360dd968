"""Plugin entry point of telehealth visits: the room tables, Slots kept consistent with the
Appointments that book them, and Encounter.statusHistory kept on every write."""

from __future__ import annotations

from fhir_server.context import Context
from operations.visits import booking, rooms, status_history, waiting


def install(ctx: Context) -> None:
    ctx.store.ensure_tables(rooms.ddl(ctx.store))
    ctx.store.ensure_tables(waiting.ddl(ctx.store))
    booking.install(ctx)
    status_history.install(ctx)
