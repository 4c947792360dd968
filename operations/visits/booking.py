"""Booking Appointments against Slots, atomically, on plain FHIR writes
(https://hl7.org/fhir/R4/appointment.html#status, https://hl7.org/fhir/R4/slot.html).

telefhir takes no `$book` operation: any create, update, patch, delete or transaction entry of
an Appointment keeps its Slots consistent, in the same database transaction as the write.
- An Appointment that holds its time (status pending, booked, arrived, checked-in, fulfilled)
  makes each Slot it references busy. A Slot that is busy for another Appointment, or
  busy-unavailable, busy-tentative or entered-in-error, refuses the write: 409 with an
  OperationOutcome naming the Slot. Concurrent bookings of one Slot are serialised on a lock
  of that Slot, so exactly one wins, the others get 409.
- A Slot the Appointment no longer holds (it was cancelled, marked noshow or entered-in-error,
  removed from Appointment.slot, or the Appointment was deleted) becomes free again, unless
  another holding Appointment still references it.
Availability is an ordinary search: `Slot?schedule=Schedule/ID&status=free&start=ge...`."""

from __future__ import annotations

from typing import Any

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.store.base import StoredResource, StoreTx
from fhir_server.writes import store_resource
from resources import json_numbers

HOLDING = ("pending", "booked", "arrived", "checked-in", "fulfilled")
_REFUSING = ("busy-unavailable", "busy-tentative", "entered-in-error")


def _slot_ids(appointment: dict[str, Any] | None) -> set[str]:
    if not appointment or appointment.get("status") not in HOLDING:
        return set()
    out = set()
    for ref in appointment.get("slot") or []:
        rtype, _, rid = str((ref or {}).get("reference", "")).partition("/")
        if rtype == "Slot" and rid and "/" not in rid:
            out.add(rid)
    return out


def _body(stored: StoredResource | None) -> dict[str, Any] | None:
    if stored is None or stored.deleted or stored.body is None:
        return None
    body: dict[str, Any] = json_numbers.loads(stored.body)
    return body


def _holders(ctx: Context, tx: StoreTx, slot_id: str, exclude: str) -> list[str]:
    """Ids of other Appointments that hold the Slot."""
    found = ctx.search_engine.find_ids(
        tx, "Appointment", [("slot", f"Slot/{slot_id}"), ("status", ",".join(HOLDING))])
    return [rid for _pk, rid in found if rid != exclude]


def _set_status(ctx: Context, tx: StoreTx, stored: StoredResource, status: str) -> None:
    slot = _body(stored)
    if slot is None or slot.get("status") == status:
        return
    slot["status"] = status
    store_resource(ctx, tx, slot, stored.res_id, stored, "PUT")


def _book(ctx: Context, tx: StoreTx, appt_id: str, slot_id: str) -> None:
    tx.lock(f"slot:{slot_id}")
    stored = tx.read("Slot", slot_id)
    slot = _body(stored)
    where = f"Appointment.slot (Slot/{slot_id})"
    if stored is None or slot is None:
        raise FhirError.of(422, "not-found", f"Slot/{slot_id} does not exist", where)
    status = slot.get("status")
    if status in _REFUSING:
        raise FhirError.of(409, "conflict", f"Slot/{slot_id} is {status} and cannot be booked",
                           where)
    others = _holders(ctx, tx, slot_id, appt_id)
    if others:
        raise FhirError.of(409, "conflict", f"Slot/{slot_id} is already booked "
                           f"(Appointment/{others[0]})", where)
    _set_status(ctx, tx, stored, "busy")


def _release(ctx: Context, tx: StoreTx, appt_id: str, slot_id: str) -> None:
    tx.lock(f"slot:{slot_id}")
    stored = tx.read("Slot", slot_id)
    slot = _body(stored)
    if stored is None or slot is None or slot.get("status") != "busy":
        return
    if not _holders(ctx, tx, slot_id, appt_id):
        _set_status(ctx, tx, stored, "free")


def _sync(ctx: Context, tx: StoreTx, appt_id: str, new: dict[str, Any] | None) -> None:
    old = _body(tx.read("Appointment", appt_id))
    held, wanted = _slot_ids(old), _slot_ids(new)
    for slot_id in sorted(wanted - held):  # sorted: concurrent writers lock in one order
        _book(ctx, tx, appt_id, slot_id)
    for slot_id in sorted(wanted & held):  # still held: make sure nobody else took it
        _book(ctx, tx, appt_id, slot_id)
    for slot_id in sorted(held - wanted):
        _release(ctx, tx, appt_id, slot_id)


def on_write(ctx: Context, tx: StoreTx, res_type: str, res_id: str,
             resource: dict[str, Any]) -> None:
    if res_type == "Appointment":
        _sync(ctx, tx, res_id, resource)


def on_delete(ctx: Context, tx: StoreTx, res_type: str, res_id: str) -> None:
    if res_type == "Appointment":
        _sync(ctx, tx, res_id, None)


def install(ctx: Context) -> None:
    ctx.hooks.register("before_create", on_write)
    ctx.hooks.register("before_update", on_write)
    ctx.hooks.register("before_delete", on_delete)
