"""The durable inbox: every message received is a row in the FHIR store's own database, written
and committed before its ACK leaves (store.ensure_tables + query on a StoreTx).

A row is `pending` (accepted, its FHIR writes not yet made), `done` (written; marked in the same
transaction as the FHIR writes, so a message is applied exactly once), or `error` (the error
queue: refused at receipt, with the AE/AR sent, or failed when applied; `reason` says why).
A repeated MSH-10 control id from the same MSH-3/MSH-4 finds the first row (a unique index,
which also holds across server nodes on one PostgreSQL) and is answered with its ACK."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fhir_server.store.base import Queryable, ResourceStore, StoreTx
from fhir_server.timeutil import now_us, to_instant


def inbox_ddl(store: ResourceStore) -> list[str]:
    d = store.dialect
    return [
        f"""CREATE TABLE IF NOT EXISTS hl7_inbox (
            id {d.autoinc_pk},
            received_us {d.bigint_type} NOT NULL,
            sender_key {d.text_type} NOT NULL,
            control_id {d.text_type},
            message_type {d.text_type},
            status {d.text_type} NOT NULL,
            ack_code {d.text_type},
            raw {d.text_type} NOT NULL,
            ack {d.text_type},
            reason {d.text_type},
            location {d.text_type},
            attempts INTEGER NOT NULL DEFAULT 0,
            processed_us {d.bigint_type},
            result {d.text_type},
            peer {d.text_type},
            plan {d.text_type}
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS hl7_inbox_control ON hl7_inbox "
        "(sender_key, control_id)",
        "CREATE INDEX IF NOT EXISTS hl7_inbox_pending ON hl7_inbox (id) "
        "WHERE status = 'pending'",
        "CREATE INDEX IF NOT EXISTS hl7_inbox_errors ON hl7_inbox (id) WHERE status = 'error'",
    ]


_ensured: set[int] = set()


def ensure(store: ResourceStore) -> None:
    """Create the inbox tables once per store object."""
    if id(store) not in _ensured:
        store.ensure_tables(inbox_ddl(store))
        _ensured.add(id(store))


@dataclass
class Received:
    """A message about to be recorded: who sent it, its control id, the ACK decided for it."""

    raw: str
    sender_key: str
    control_id: str | None
    message_type: str | None
    status: str  # pending | error
    ack: str | None
    ack_code: str
    reason: str | None = None
    location: str | None = None
    peer: str | None = None
    plan: str | None = None  # the mapped Plan as JSON (pending rows)
    # filled in by record()
    row_id: int | None = None
    duplicate: bool = False


def record(tx: StoreTx, items: list[Received]) -> None:
    """Insert each message in `tx` (its caller commits before answering), or find the row of
    the same sender and control id and take over its ACK (`duplicate`)."""
    now = now_us()
    for it in items:
        if it.control_id is not None:
            rows = tx.query(
                "INSERT INTO hl7_inbox (received_us, sender_key, control_id, message_type, "
                "status, ack_code, raw, ack, reason, location, peer, plan) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sender_key, control_id) "
                "DO NOTHING RETURNING id",
                (now, it.sender_key, it.control_id, it.message_type, it.status, it.ack_code,
                 it.raw, it.ack, it.reason, it.location, it.peer, it.plan))
            if rows:
                it.row_id = int(rows[0][0])
                continue
            first = tx.query("SELECT id, ack, ack_code FROM hl7_inbox WHERE sender_key = ? "
                             "AND control_id = ?", (it.sender_key, it.control_id))
            it.row_id, it.ack, it.ack_code = int(first[0][0]), first[0][1], first[0][2]
            it.duplicate = True
            continue
        rows = tx.query(
            "INSERT INTO hl7_inbox (received_us, sender_key, control_id, message_type, status, "
            "ack_code, raw, ack, reason, location, peer) VALUES "
            "(?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (now, it.sender_key, it.message_type, it.status, it.ack_code, it.raw, it.ack,
             it.reason, it.location, it.peer))
        it.row_id = int(rows[0][0])


@dataclass
class InboxRow:
    id: int
    received_us: int
    sender_key: str
    control_id: str | None
    message_type: str | None
    status: str
    ack_code: str | None
    raw: str
    reason: str | None
    location: str | None
    attempts: int
    result: str | None
    plan: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "received": to_instant(self.received_us),
                "sender": self.sender_key, "controlId": self.control_id,
                "messageType": self.message_type, "status": self.status,
                "ackCode": self.ack_code, "reason": self.reason, "location": self.location,
                "attempts": self.attempts}


_COLUMNS = ("id, received_us, sender_key, control_id, message_type, status, ack_code, raw, "
            "reason, location, attempts, result, plan")


def _rows(q: Queryable, where: str, args: tuple[Any, ...], suffix: str = "") -> list[InboxRow]:
    return [InboxRow(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                     int(r[10]), r[11], r[12])
            for r in q.query(f"SELECT {_COLUMNS} FROM hl7_inbox WHERE {where} {suffix}", args)]


def get(q: Queryable, row_id: int) -> InboxRow | None:
    found = _rows(q, "id = ?", (row_id,))
    return found[0] if found else None


def errors(q: Queryable, limit: int = 100, after: int = 0) -> list[InboxRow]:
    """The error queue, oldest first."""
    return _rows(q, "status = 'error' AND id > ?", (after,), f"ORDER BY id LIMIT {int(limit)}")


def counts(q: Queryable) -> dict[str, int]:
    return {str(s): int(n) for s, n in
            q.query("SELECT status, COUNT(*) FROM hl7_inbox GROUP BY status")}


def _stream_lock_key(sender_key: str) -> int:
    digest = hashlib.blake2b(f"hl7-inbox:{sender_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim(tx: StoreTx, limit: int) -> list[InboxRow]:
    """Pending rows to apply in this transaction, oldest first.

    SQLite: the transaction holds the database write lock, so the oldest pending rows are
    this process's alone. PostgreSQL: the oldest sender stream whose transaction-scoped
    advisory lock is free, so that nodes sharing the database apply different senders at
    once and each sender's messages in the order received."""
    if tx.dialect.name != "postgresql":
        return _rows(tx, "status = 'pending'", (), f"ORDER BY id LIMIT {int(limit)}")
    streams = tx.query("SELECT sender_key FROM hl7_inbox WHERE status = 'pending' "
                       "GROUP BY sender_key ORDER BY MIN(id) LIMIT 32")
    for (sender,) in streams:
        got = tx.query("SELECT pg_try_advisory_xact_lock(?)", (_stream_lock_key(sender),))
        if got and got[0][0]:
            return _rows(tx, "status = 'pending' AND sender_key = ?", (sender,),
                         f"ORDER BY id LIMIT {int(limit)} FOR UPDATE")
    return []


def claim_one(tx: StoreTx, row_id: int) -> InboxRow | None:
    """Row `row_id` if it is still pending (for applying one message now: $ingest, replay)."""
    if tx.dialect.name == "postgresql":
        sender = tx.query("SELECT sender_key FROM hl7_inbox WHERE id = ?", (row_id,))
        if not sender:
            return None
        tx.query("SELECT pg_advisory_xact_lock(?)", (_stream_lock_key(sender[0][0]),))
        found = _rows(tx, "id = ? AND status = 'pending'", (row_id,), "FOR UPDATE")
    else:
        found = _rows(tx, "id = ? AND status = 'pending'", (row_id,))
    return found[0] if found else None


def mark_done(tx: StoreTx, row_id: int, result: str) -> None:
    tx.query("UPDATE hl7_inbox SET status = 'done', processed_us = ?, result = ?, "
             "attempts = attempts + 1, reason = NULL, location = NULL, plan = NULL WHERE id = ?",
             (now_us(), result, row_id))


def mark_error(tx: StoreTx, row_id: int, reason: str, location: str | None) -> None:
    tx.query("UPDATE hl7_inbox SET status = 'error', processed_us = ?, reason = ?, "
             "location = ?, attempts = attempts + 1 WHERE id = ?",
             (now_us(), reason, location, row_id))


def requeue(tx: StoreTx, row_id: int) -> bool:
    """Put an error row back to pending (replay); False if it is not in the error queue."""
    rows = tx.query("UPDATE hl7_inbox SET status = 'pending', plan = NULL WHERE id = ? AND "
                    "status = 'error' RETURNING id", (row_id,))
    return bool(rows)
