"""Video rooms, join links and media tokens, kept in the FHIR store so that every server
process and node sees them (tables of the media package, created with `ensure_tables`).

- A room is bound to one Encounter and hosted by one media service (`media_url`).
- A join link is single-use and short-lived: it is stored only as a SHA-256 hash, redeemed at
  most once (an atomic `UPDATE ... RETURNING`), and bound to one participant, role and room.
- Redeeming a link gives a media token: also stored hashed, bound to the same participant,
  role and room, refused once the room closes (closing revokes every token of the room).
- Presence rows record each participant's joins and leaves, for Encounter.participant.period.

Links and tokens are 256-bit random strings (`secrets.token_urlsafe`), so a plain SHA-256 is
the right way to store them (nothing to stretch: they cannot be guessed)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.store.base import Queryable, ResourceStore
from fhir_server.timeutil import now_us


def ddl(store: ResourceStore) -> list[str]:
    """The media tables, for `store.ensure_tables`."""
    d = store.dialect
    big = d.bigint_type
    return [
        f"""CREATE TABLE IF NOT EXISTS media_rooms (
            room TEXT PRIMARY KEY,
            encounter TEXT NOT NULL,
            media_url TEXT NOT NULL,
            capacity INTEGER NOT NULL,
            created_us {big} NOT NULL,
            closed_us {big}
        )""",
        "CREATE INDEX IF NOT EXISTS media_rooms_encounter ON media_rooms (encounter)",
        f"""CREATE TABLE IF NOT EXISTS media_links (
            link_hash TEXT PRIMARY KEY,
            room TEXT NOT NULL,
            participant TEXT NOT NULL,
            reference TEXT NOT NULL,
            role TEXT NOT NULL,
            expires_us {big} NOT NULL,
            redeemed_us {big}
        )""",
        "CREATE INDEX IF NOT EXISTS media_links_room ON media_links (room)",
        f"""CREATE TABLE IF NOT EXISTS media_tokens (
            token_hash TEXT PRIMARY KEY,
            room TEXT NOT NULL,
            participant TEXT NOT NULL,
            reference TEXT NOT NULL,
            role TEXT NOT NULL,
            expires_us {big} NOT NULL,
            revoked BOOLEAN NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS media_tokens_room ON media_tokens (room)",
        f"""CREATE TABLE IF NOT EXISTS media_presence (
            pk {d.autoinc_pk},
            room TEXT NOT NULL,
            participant TEXT NOT NULL,
            joined_us {big} NOT NULL,
            left_us {big}
        )""",
        "CREATE INDEX IF NOT EXISTS media_presence_room ON media_presence (room, participant)",
    ]


def digest(secret: str) -> str:
    """How a link or token is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Room:
    room: str
    encounter: str  # "Encounter/123"
    media_url: str  # the media service hosting it, e.g. http://host:8081/media
    capacity: int
    created_us: int
    closed_us: int | None

    @property
    def open(self) -> bool:
        return self.closed_us is None


@dataclass(frozen=True)
class Grant:
    """What a link or token lets its holder do: join `room` as `participant` in `role`."""

    room: str
    participant: str  # a participant id within the room
    reference: str  # Practitioner/1, Patient/2, RelatedPerson/3
    role: str  # e.g. practitioner | patient | interpreter


class LinkRefused(Exception):
    """A join link or token cannot be used; `status` is 403 or 410, `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_ROOM_COLS = "room, encounter, media_url, capacity, created_us, closed_us"


def _room(row: Sequence[Any]) -> Room:
    return Room(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]),
                None if row[5] is None else int(row[5]))


def room_for_encounter(q: Queryable, encounter: str) -> Room | None:
    """The open room of an Encounter, if there is one."""
    rows = q.query(f"SELECT {_ROOM_COLS} FROM media_rooms WHERE encounter = ? AND "
                   "closed_us IS NULL ORDER BY created_us DESC", (encounter,))
    return _room(rows[0]) if rows else None


def get_room(q: Queryable, room: str) -> Room | None:
    rows = q.query(f"SELECT {_ROOM_COLS} FROM media_rooms WHERE room = ?", (room,))
    return _room(rows[0]) if rows else None


def open_room(q: Queryable, encounter: str, media_url: str, capacity: int) -> Room:
    """The open room of `encounter`, or a new one (call inside the transaction that starts
    the visit, after locking the Encounter, so two calls cannot both create one)."""
    existing = room_for_encounter(q, encounter)
    if existing is not None:
        return existing
    room = Room(secrets.token_urlsafe(16), encounter, media_url, capacity, now_us(), None)
    q.query("INSERT INTO media_rooms (room, encounter, media_url, capacity, created_us) "
            "VALUES (?, ?, ?, ?, ?)",
            (room.room, encounter, media_url, capacity, room.created_us))
    return room


def issue_link(q: Queryable, grant: Grant, ttl_s: int) -> str:
    """A new single-use join link secret for `grant`, valid for `ttl_s` seconds."""
    secret = secrets.token_urlsafe(32)
    q.query("INSERT INTO media_links (link_hash, room, participant, reference, role, "
            "expires_us) VALUES (?, ?, ?, ?, ?, ?)",
            (digest(secret), grant.room, grant.participant, grant.reference, grant.role,
             now_us() + ttl_s * 1_000_000))
    return secret


def peek_link(q: Queryable, secret: str) -> Grant:
    """What a link grants, without redeeming it (a GET of the join URL never consumes it)."""
    rows = q.query("SELECT l.room, l.participant, l.reference, l.role, l.expires_us, "
                   "l.redeemed_us, r.closed_us FROM media_links l JOIN media_rooms r "
                   "ON r.room = l.room WHERE l.link_hash = ?", (digest(secret),))
    if not rows:
        raise LinkRefused(403, "This visit link is not valid")
    room, participant, reference, role, expires, redeemed, closed = rows[0]
    if closed is not None:
        raise LinkRefused(410, "This visit has ended")
    if redeemed is not None:
        raise LinkRefused(410, "This visit link has already been used")
    if int(expires) < now_us():
        raise LinkRefused(410, "This visit link has expired")
    return Grant(str(room), str(participant), str(reference), str(role))


def redeem_link(q: Queryable, secret: str, token_ttl_s: int) -> tuple[Grant, str]:
    """Consume a join link (once) and issue a media token for the same grant."""
    grant = peek_link(q, secret)
    now = now_us()
    claimed = q.query("UPDATE media_links SET redeemed_us = ? WHERE link_hash = ? AND "
                      "redeemed_us IS NULL AND expires_us >= ? RETURNING room",
                      (now, digest(secret), now))
    if not claimed:
        raise LinkRefused(410, "This visit link has already been used")
    return grant, issue_token(q, grant, token_ttl_s)


def issue_token(q: Queryable, grant: Grant, ttl_s: int) -> str:
    """A media token for `grant` (a clinician launched with encounter context gets one
    without a link)."""
    secret = secrets.token_urlsafe(32)
    q.query("INSERT INTO media_tokens (token_hash, room, participant, reference, role, "
            f"expires_us, revoked) VALUES (?, ?, ?, ?, ?, ?, {q.dialect.bool_false})",
            (digest(secret), grant.room, grant.participant, grant.reference, grant.role,
             now_us() + ttl_s * 1_000_000))
    return secret


def verify_token(q: Queryable, secret: str) -> Grant:
    """The grant of a live media token of an open room; LinkRefused otherwise."""
    rows = q.query("SELECT t.room, t.participant, t.reference, t.role, t.expires_us, "
                   "t.revoked, r.closed_us FROM media_tokens t JOIN media_rooms r "
                   "ON r.room = t.room WHERE t.token_hash = ?", (digest(secret),))
    if not rows:
        raise LinkRefused(403, "The media token is not valid")
    room, participant, reference, role, expires, revoked, closed = rows[0]
    if closed is not None:
        raise LinkRefused(410, "This visit has ended")
    if revoked:
        raise LinkRefused(403, "The media token was revoked")
    if int(expires) < now_us():
        raise LinkRefused(403, "The media token has expired")
    return Grant(str(room), str(participant), str(reference), str(role))


def close_room(q: Queryable, room: str) -> None:
    """Close a room and revoke every token and unused link of it."""
    now = now_us()
    q.query("UPDATE media_rooms SET closed_us = ? WHERE room = ? AND closed_us IS NULL",
            (now, room))
    q.query(f"UPDATE media_tokens SET revoked = {q.dialect.bool_true} WHERE room = ?", (room,))
    q.query("UPDATE media_links SET expires_us = ? WHERE room = ? AND redeemed_us IS NULL",
            (now - 1, room))
    q.query("UPDATE media_presence SET left_us = ? WHERE room = ? AND left_us IS NULL",
            (now, room))


def closed_rooms(q: Queryable, rooms: Sequence[str]) -> set[str]:
    """Which of `rooms` have been closed (the media service polls this)."""
    if not rooms:
        return set()
    marks = ", ".join("?" for _ in rooms)
    rows = q.query(f"SELECT room FROM media_rooms WHERE room IN ({marks}) AND "
                   "closed_us IS NOT NULL", list(rooms))
    return {str(r[0]) for r in rows}


def record_join(q: Queryable, room: str, participant: str) -> None:
    q.query("INSERT INTO media_presence (room, participant, joined_us) VALUES (?, ?, ?)",
            (room, participant, now_us()))


def record_leave(q: Queryable, room: str, participant: str) -> None:
    q.query("UPDATE media_presence SET left_us = ? WHERE room = ? AND participant = ? AND "
            "left_us IS NULL", (now_us(), room, participant))


def presence(q: Queryable, room: str) -> list[tuple[str, int, int | None]]:
    """(participant, joined_us, left_us) of every stay in the room, oldest first."""
    rows = q.query("SELECT participant, joined_us, left_us FROM media_presence WHERE room = ? "
                   "ORDER BY joined_us, pk", (room,))
    return [(str(p), int(j), None if left is None else int(left)) for p, j, left in rows]


def participants(q: Queryable, room: str) -> dict[str, tuple[str, str]]:
    """participant id -> (reference, role) of everyone given a link or token for the room."""
    rows = q.query("SELECT participant, reference, role FROM media_links WHERE room = ? "
                   "UNION SELECT participant, reference, role FROM media_tokens WHERE room = ?",
                   (room, room))
    return {str(p): (str(ref), str(role)) for p, ref, role in rows}
