"""Group commit of AuditEvents, in two steps.

1. Durable: request threads queue their event and wait; one of them at a time (the leader)
   takes everything queued, appends it to the `audit_log` table (one row per event, its final
   JSON) in one database transaction and wakes the others when it has committed. The commit
   (an fsync on SQLite, a WAL flush on PostgreSQL) is shared by every event of the batch, and
   no answer leaves before its AuditEvent is durable. (A dedicated writer thread did the same
   with one more thread switch per batch; in-process the two cost the same CPU per event.)
2. Searchable: `flush` moves logged events into the resource store as AuditEvent resources
   (indexed like any resource, so the search API finds them), in the same transaction that
   deletes them from the log. A background thread does it when its process has had nothing
   to log for a moment (INDEX_BATCH at a time, so that a request arriving meanwhile waits little
   for the interpreter), and every read or search by an auditor does it first
   (smart_apps.audit.plugin), so an auditor sees every event committed before its request.

Indexing an AuditEvent (its ~25 index rows from FHIRPath expressions) costs about ten times
what logging it does (bench/README.md), so it is kept off the answer's path.
Events are written with `StoreTx.put` and run no write hooks: writing an AuditEvent is never
itself audited, and the hooks that refuse client changes to AuditEvents do not see it."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.store.base import ResourceStore, StoreTx
from fhir_server.timeutil import now_us, to_instant
from resources import json_numbers

log = logging.getLogger("telefhir.audit")

IDLE_SECONDS = 5.0
"""The background thread ends after this long with nothing to do (a new one starts on the next
event): an idle server, or a forked worker, keeps no thread it does not use."""
QUIET_SECONDS = 0.5
"""Nothing logged for this long: the background thread moves logged events into the store."""
FLUSH_BATCH = 500
INDEX_BATCH = 50

DDL = ("""CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY,
    recorded_us BIGINT NOT NULL,
    body TEXT NOT NULL
)""", "CREATE INDEX IF NOT EXISTS audit_log_recorded ON audit_log (recorded_us)")


class AuditWriteFailed(Exception):
    """The batch holding an event could not be committed."""


def _stamped(event: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """The event as stored (fhir_server.writes.stamp: id and meta first), with `recorded` and
    meta.lastUpdated the same instant."""
    res_id = str(uuid.uuid4())
    updated = now_us()
    instant = to_instant(updated)
    out = {"resourceType": "AuditEvent", "id": res_id,
           "meta": {"versionId": "1", "lastUpdated": instant}}
    out.update(event)
    out["id"], out["recorded"] = res_id, instant
    return res_id, updated, out


INSERT = "INSERT INTO audit_log (id, recorded_us, body) VALUES "
MAX_ROWS = 300
"""Rows of one multi-row INSERT, the most one commit carries (3 parameters each: within
SQLite's oldest limit of 999)."""

Row = tuple[str, int, str]


def log_row(event: dict[str, Any]) -> Row:
    """The `audit_log` row of one AuditEvent: id, recorded time, final JSON."""
    res_id, updated, stamped = _stamped(event)
    return res_id, updated, json_numbers.dumps(stamped).decode()


def _insert(rows: Sequence[Row]) -> tuple[str, list[Any]]:
    return INSERT + ", ".join(["(?, ?, ?)"] * len(rows)), [v for row in rows for v in row]


def log_event(tx: StoreTx, event: dict[str, Any]) -> str:
    """Append one AuditEvent to `audit_log` in `tx`; its id."""
    row = log_row(event)
    tx.query(*_insert([row]))
    return row[0]


def flush(tx: StoreTx, limit: int | None = None) -> int:
    """Move logged AuditEvents (the oldest `limit`, or all) into the resource store in `tx`;
    how many. Concurrent flushers each move a row at most once: it is deleted from the log in
    the transaction that stores it."""
    moved = 0
    while True:
        n = FLUSH_BATCH if limit is None else min(FLUSH_BATCH, limit - moved)
        if n <= 0:
            return moved
        rows = tx.query("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log ORDER BY "
                        "recorded_us LIMIT ?) RETURNING id, recorded_us, body", (n,))
        for res_id, updated, body in rows:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            tx.put("AuditEvent", str(res_id), json_numbers.loads(raw), raw, 1, "POST", int(updated))
        moved += len(rows)
        if len(rows) < n:
            return moved


@dataclass
class _Batch:
    rows: list[Row]
    done: threading.Event
    error: BaseException | None = None


class AuditWriter:
    """Queues AuditEvents and commits them in batches (at most MAX_ROWS a transaction).

    One writer thread per process: request threads queue their event and wait on their batch's
    own `threading.Event`, so a commit wakes exactly the threads whose events it carried (a
    shared condition woke every waiting thread after each commit: ~19 context switches per
    audited read with 8 threads, bench/audit_inprocess.py). While one commit waits on the disk,
    the events of the next requests gather for the next. When the process has logged nothing
    for QUIET_SECONDS the same thread moves logged events into the store (`flush`), a few at a
    time, and it ends after IDLE_SECONDS with nothing to do (the next event starts another)."""

    def __init__(self, store: ResourceStore) -> None:
        store.ensure_tables(DDL)
        self._store = store
        self._cond = threading.Condition()  # the writer thread waits on it for work
        self._open: _Batch | None = None  # the batch new events join
        self._queue: list[_Batch] = []
        self._last = 0.0  # time.monotonic() of the last event queued
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, event: dict[str, Any]) -> _Batch:
        """Queue `event`; the batch to wait on (`wait`). Its row is made here, in the caller's
        thread, so that the writer's commit holds the interpreter lock as little as it can:
        each time it takes the lock back (after flock, BEGIN, INSERT, COMMIT) it competes with
        every busy request thread of the process."""
        row = log_row(event)
        with self._cond:
            batch = self._open
            if batch is None or len(batch.rows) >= MAX_ROWS:
                batch = self._open = _Batch([], threading.Event())
                self._queue.append(batch)
            batch.rows.append(row)
            self._last = time.monotonic()
            self._ensure_thread()
            self._cond.notify()
            return batch

    def wait(self, batch: _Batch, timeout: float = 30.0) -> None:
        """Return once `batch` is committed; AuditWriteFailed if it was not."""
        if not batch.done.wait(timeout):
            raise AuditWriteFailed(f"the audit batch was not committed within {timeout:.0f} s")
        if batch.error is not None:
            raise AuditWriteFailed(str(batch.error)) from batch.error

    def write(self, events: Sequence[dict[str, Any]]) -> None:
        """Queue `events` and wait until they are durable."""
        batch = None
        for e in events:
            batch = self.submit(e)
        if batch is not None:
            self.wait(batch)

    def _commit(self, taken: list[_Batch]) -> None:
        error: BaseException | None = None
        try:
            # one multi-row INSERT, committed on its own: one statement execution, one release
            # of the interpreter lock, one commit for the lot
            self._store.append(*_insert([row for batch in taken for row in batch.rows]))
        except Exception as exc:  # the waiters answer 500
            log.exception("writing %d AuditEvents failed", sum(len(b.rows) for b in taken))
            error = exc
        for batch in taken:
            batch.error = error
            batch.done.set()

    # -- the thread ------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        """(Under self._cond.) A writer thread runs in this process."""
        alive = self._thread is not None and self._thread.is_alive()
        if alive and self._pid == os.getpid():
            return
        self._pid = os.getpid()  # a forked child has the parent's object but not its thread
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _quiet(self) -> bool:
        with self._cond:
            return not self._queue and time.monotonic() - self._last >= QUIET_SECONDS

    def _index_some(self) -> bool:
        """Move a batch of logged events into the store; whether there were any."""
        try:
            with self._store.transaction() as tx:
                return flush(tx, INDEX_BATCH) > 0
        except Exception:  # left in the log for the next try (or an auditor's read)
            if not self._store.closed:  # a closed store (shutdown) ends the thread quietly
                log.exception("indexing logged AuditEvents failed")
            return False

    def _run(self) -> None:
        idle = 0.0
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(QUIET_SECONDS)
                taken, rows = [], 0
                while self._queue and rows + len(self._queue[0].rows) <= MAX_ROWS:
                    rows += len(self._queue[0].rows)
                    taken.append(self._queue.pop(0))
                if not self._queue:
                    self._open = None
            if taken:
                self._commit(taken)
                idle = 0.0
                continue
            if self._store.closed:
                with self._cond:
                    if not self._queue:  # an event queued meanwhile is committed (and fails)
                        self._thread = None
                        return
                continue
            if not self._quiet():
                continue
            moved = False
            while self._quiet() and self._index_some():
                moved = True
            idle = 0.0 if moved else idle + QUIET_SECONDS
            with self._cond:
                if idle >= IDLE_SECONDS and not self._queue and \
                        time.monotonic() - self._last >= IDLE_SECONDS:
                    self._thread = None  # this thread ends; submit starts another
                    return
