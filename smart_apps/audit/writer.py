"""Group commit of AuditEvents: request threads queue their event and wait; one writer thread
per process (and store) takes everything queued, writes it in one database transaction and
wakes the waiters when it has committed. The commit (an fsync on SQLite, a WAL flush on
PostgreSQL) is shared by every event of the batch, so auditing costs one commit per batch
rather than one per request, and no answer leaves before its AuditEvent is durable
(https://www.postgresql.org/docs/current/wal-async-commit.html describes the same trade for
the database's own commits).

The events are written straight with `StoreTx.put` (indexed like any resource, so the
search API finds them) and run no write hooks: writing an AuditEvent is never itself audited,
and the hooks that refuse client changes to AuditEvents do not see it."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.store.base import ResourceStore, StoreTx
from fhir_server.timeutil import now_us
from fhir_server.writes import stamp

log = logging.getLogger("telefhir.audit")

IDLE_SECONDS = 5.0
"""The writer thread ends after this long with nothing to write (a new one starts on the next
event): an idle server, or a forked worker, keeps no thread it does not use."""


class AuditWriteFailed(Exception):
    """The batch holding an event could not be committed."""


def put_event(tx: StoreTx, event: dict[str, Any]) -> str:
    """Write one AuditEvent (a new id, version 1) into `tx`; its id."""
    res_id = str(uuid.uuid4())
    updated = now_us()
    stamped = stamp(event, res_id, 1, updated)
    tx.put("AuditEvent", res_id, stamped, orjson.dumps(stamped), 1, "POST", updated)
    return res_id


@dataclass
class _Batch:
    events: list[dict[str, Any]]
    done: threading.Event
    error: BaseException | None = None


class AuditWriter:
    """Queues AuditEvents and commits them in batches (at most `max_batch` a transaction)."""

    def __init__(self, store: ResourceStore, max_batch: int = 512) -> None:
        self._store = store
        self._max = max_batch
        self._cond = threading.Condition()
        self._open: _Batch | None = None  # the batch new events join
        self._queue: list[_Batch] = []
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, event: dict[str, Any]) -> _Batch:
        """Queue `event`; the batch to wait on (`wait`)."""
        with self._cond:
            batch = self._open
            if batch is None or len(batch.events) >= self._max:
                batch = self._open = _Batch([], threading.Event())
                self._queue.append(batch)
            batch.events.append(event)
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

    def _ensure_thread(self) -> None:
        alive = self._thread is not None and self._thread.is_alive()
        if alive and self._pid == os.getpid():
            return
        self._pid = os.getpid()  # a forked child has the parent's object but not its thread
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _take(self) -> list[_Batch]:
        """Every queued batch, waiting for one up to IDLE_SECONDS; [] when idle."""
        with self._cond:
            if not self._queue:
                self._cond.wait(IDLE_SECONDS)
            if not self._queue:
                self._thread = None  # this thread ends; submit starts another
                return []
            taken, self._queue, self._open = self._queue, [], None
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return
            error: BaseException | None = None
            try:
                with self._store.transaction() as tx:
                    for batch in taken:
                        for event in batch.events:
                            put_event(tx, event)
            except Exception as exc:  # the waiters answer 500; the writer carries on
                log.exception("writing %d AuditEvents failed",
                              sum(len(b.events) for b in taken))
                error = exc
            for batch in taken:
                batch.error = error
                batch.done.set()
