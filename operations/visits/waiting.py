"""The waiting room's passes and heartbeats, kept in the FHIR store so every server process
sees them (a table created with `ensure_tables`).

`$check-in` gives the patient a waiting-room pass: a 256-bit random secret (stored only as its
SHA-256 hash, like join links: nothing to stretch) bound to one Appointment and its patient.
The patient's page uses it for its heartbeat (`POST /visit/wait/{pass}/heartbeat`) and for the
"clinician ready" event, which hands the patient a fresh single-use join link once
`$start-visit` has opened the room. The pass is not a FHIR credential: it reads nothing of the
chart. The clinician's queue shows each patient's last heartbeat."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.store.base import Queryable, ResourceStore
from fhir_server.timeutil import now_us
from operations.visits.rooms import LinkRefused, digest

PASS_TTL_S = 24 * 3600
"""A pass lasts the day of the visit; the visit's own end closes it earlier (its room closes,
its Appointment is fulfilled)."""


def ddl(store: ResourceStore) -> list[str]:
    big = store.dialect.bigint_type
    return [
        f"""CREATE TABLE IF NOT EXISTS visit_waiting (
            pass_hash TEXT PRIMARY KEY,
            appointment TEXT NOT NULL,
            patient TEXT NOT NULL,
            issued_us {big} NOT NULL,
            expires_us {big} NOT NULL,
            seen_us {big}
        )""",
        "CREATE INDEX IF NOT EXISTS visit_waiting_appt ON visit_waiting (appointment)",
    ]


@dataclass(frozen=True)
class Pass:
    appointment: str  # Appointment id
    patient: str  # "Patient/123"


def issue_pass(q: Queryable, appointment: str, patient: str) -> str:
    """A new waiting-room pass for the patient of an Appointment (check-in counts as seen)."""
    secret = secrets.token_urlsafe(32)
    now = now_us()
    q.query("INSERT INTO visit_waiting (pass_hash, appointment, patient, issued_us, "
            "expires_us, seen_us) VALUES (?, ?, ?, ?, ?, ?)",
            (digest(secret), appointment, patient, now, now + PASS_TTL_S * 1_000_000, now))
    return secret


def pass_of(q: Queryable, secret: str) -> Pass:
    """What a pass is for; LinkRefused (403 unknown, 410 expired) otherwise."""
    rows = q.query("SELECT appointment, patient, expires_us FROM visit_waiting "
                   "WHERE pass_hash = ?", (digest(secret),))
    if not rows:
        raise LinkRefused(403, "This waiting-room pass is not valid")
    appointment, patient, expires = rows[0]
    if int(expires) < now_us():
        raise LinkRefused(410, "This waiting-room pass has expired")
    return Pass(str(appointment), str(patient))


def heartbeat(q: Queryable, secret: str) -> Pass:
    """Record that the patient holding the pass is still there."""
    found = pass_of(q, secret)
    q.query("UPDATE visit_waiting SET seen_us = ? WHERE pass_hash = ?",
            (now_us(), digest(secret)))
    return found


def last_seen(q: Queryable, appointments: Sequence[str]) -> dict[str, int]:
    """Appointment id -> the latest heartbeat of any of its passes (epoch microseconds)."""
    if not appointments:
        return {}
    marks = ", ".join("?" for _ in appointments)
    rows: list[Any] = q.query(
        f"SELECT appointment, MAX(seen_us) FROM visit_waiting WHERE appointment IN ({marks}) "
        "GROUP BY appointment", list(appointments))
    return {str(a): int(s) for a, s in rows if s is not None}
