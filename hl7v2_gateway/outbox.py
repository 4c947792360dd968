"""The durable outbox: an SIU or ADT message for each downstream endpoint, written by the
after_create/after_update hooks in the same database transaction as the Appointment or
Encounter write that caused it (so a message is queued if and only if the write commits).

A row is `pending` until the endpoint acknowledges it (`sent`), or `failed` after an AE/CE
answer or `outbound_retry_max` attempts. Rows of one endpoint are sent oldest first, one at a
time, so a downstream system sees events in the order they happened. Writes made by the HL7
gateway itself (messages that came in over v2) are not echoed out."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.context import Context
from fhir_server.store.base import Queryable, ResourceStore, StoredResource, StoreTx
from fhir_server.timeutil import now_us, to_instant
from hl7v2_gateway import outbound
from hl7v2_gateway.settings import GatewaySettings
from resources import json_numbers

log = logging.getLogger("telefhir.hl7")
APPLYING_V2: contextvars.ContextVar[bool] = contextvars.ContextVar("hl7v2_applying",
                                                                    default=False)
"""Set while the gateway applies an inbound message (its writes are not sent back out)."""


def outbox_ddl(store: ResourceStore) -> list[str]:
    d = store.dialect
    return [
        f"""CREATE TABLE IF NOT EXISTS hl7_outbox (
            id {d.autoinc_pk},
            created_us {d.bigint_type} NOT NULL,
            endpoint {d.text_type} NOT NULL,
            event {d.text_type} NOT NULL,
            resource {d.text_type} NOT NULL,
            message {d.text_type} NOT NULL,
            status {d.text_type} NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_us {d.bigint_type} NOT NULL,
            last_error {d.text_type},
            ack_code {d.text_type},
            sent_us {d.bigint_type}
        )""",
        "CREATE INDEX IF NOT EXISTS hl7_outbox_pending ON hl7_outbox (endpoint, id) "
        "WHERE status = 'pending'",
    ]


@dataclass
class OutboxRow:
    id: int
    created_us: int
    endpoint: str
    event: str
    resource: str
    message: str
    status: str
    attempts: int
    next_attempt_us: int
    last_error: str | None
    ack_code: str | None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "created": to_instant(self.created_us),
                "endpoint": self.endpoint, "event": self.event, "resource": self.resource,
                "status": self.status, "attempts": self.attempts,
                "nextAttempt": to_instant(self.next_attempt_us)
                if self.status == "pending" else None,
                "lastError": self.last_error, "ackCode": self.ack_code}


_COLS = ("id, created_us, endpoint, event, resource, message, status, attempts, "
         "next_attempt_us, last_error, ack_code")


def _rows(q: Queryable, where: str, args: tuple[Any, ...], suffix: str = "") -> list[OutboxRow]:
    return [OutboxRow(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], int(r[7]), int(r[8]),
                      r[9], r[10])
            for r in q.query(f"SELECT {_COLS} FROM hl7_outbox WHERE {where} {suffix}", args)]


def listing(q: Queryable, statuses: tuple[str, ...] = ("pending", "failed"),
            limit: int = 100) -> list[OutboxRow]:
    marks = ", ".join("?" for _ in statuses)
    return _rows(q, f"status IN ({marks})", statuses, f"ORDER BY id LIMIT {int(limit)}")


def next_due(tx: StoreTx, endpoint: str, now: int, lease_us: int) -> OutboxRow | None:
    """The oldest pending row of `endpoint` if it is due, leased for `lease_us` (a crash
    while sending retries it after the lease)."""
    rows = _rows(tx, "status = 'pending' AND endpoint = ?", (endpoint,),
                 "ORDER BY id LIMIT 1" + tx.dialect.for_update)
    if not rows or rows[0].next_attempt_us > now:
        return None
    row = rows[0]
    tx.query("UPDATE hl7_outbox SET attempts = attempts + 1, next_attempt_us = ? WHERE id = ?",
             (now + lease_us, row.id))
    row.attempts += 1
    return row


def mark_sent(tx: StoreTx, row_id: int, ack_code: str) -> None:
    tx.query("UPDATE hl7_outbox SET status = 'sent', ack_code = ?, sent_us = ?, "
             "last_error = NULL WHERE id = ?", (ack_code, now_us(), row_id))


def mark_retry(tx: StoreTx, row_id: int, error: str, at_us: int, failed: bool,
               ack_code: str | None = None) -> None:
    tx.query("UPDATE hl7_outbox SET status = ?, last_error = ?, next_attempt_us = ?, "
             "ack_code = ? WHERE id = ?",
             ("failed" if failed else "pending", error, at_us, ack_code, row_id))


class OutboxHooks:
    """The after_create/after_update hooks that queue outbound messages."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._ready: set[int] = set()

    def install(self, ctx: Context) -> None:
        if not self.settings.outbound:
            return
        ctx.store.ensure_tables(outbox_ddl(ctx.store))
        ctx.hooks.register("after_create", self.after_write)
        ctx.hooks.register("after_update", self.after_write)

    def after_write(self, ctx: Context, tx: StoreTx, stored: StoredResource) -> None:
        if stored.res_type not in ("Appointment", "Encounter") or APPLYING_V2.get():
            return
        assert stored.body is not None
        after = json_numbers.loads(stored.body)
        before = None
        if stored.version > 1:
            prev = tx.vread(stored.res_type, stored.res_id, stored.version - 1)
            if prev is not None and prev.body is not None and not prev.deleted:
                before = json_numbers.loads(prev.body)
        kind = "appointment" if stored.res_type == "Appointment" else "encounter"
        event = (outbound.appointment_event(before, after) if kind == "appointment"
                 else outbound.encounter_event(before, after))
        if event is None:
            return
        patient_ref = _patient_ref(after)
        patient = None
        if patient_ref and patient_ref.startswith("Patient/"):
            p = tx.read("Patient", patient_ref.split("/", 1)[1])
            if p is not None and p.body is not None and not p.deleted:
                patient = json_numbers.loads(p.body)
        now = now_us()
        for ep in self.settings.outbound:
            if kind not in ep.events:
                continue
            text = (outbound.siu if kind == "appointment" else outbound.adt)(
                self.settings, ep, event, after, patient, patient_ref)
            tx.query("INSERT INTO hl7_outbox (created_us, endpoint, event, resource, message, "
                     "status, next_attempt_us) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                     (now, ep.name, f"{'SIU' if kind == 'appointment' else 'ADT'}^{event}",
                      f"{stored.res_type}/{stored.res_id}/_history/{stored.version}", text,
                      now))


def _patient_ref(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Encounter":
        return str((resource.get("subject") or {}).get("reference") or "") or None
    for part in resource.get("participant") or []:
        ref = str((part.get("actor") or {}).get("reference") or "")
        if ref.startswith("Patient/"):
            return ref
    return None
