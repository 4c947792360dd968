"""The audit trail's group commit (smart_apps.audit.writer) on both backends: many threads'
events, more than one commit carries, are each durable once when `wait` returns, and move
into the store as searchable AuditEvents exactly once; a failed commit is reported to every
waiter of its batch."""

from __future__ import annotations

import threading

import pytest

from fhir_server.store.base import ResourceStore
from smart_apps.audit.writer import MAX_ROWS, AuditWriteFailed, AuditWriter, flush


def _event(n: int) -> dict[str, object]:
    return {"resourceType": "AuditEvent", "type": {"code": "rest"}, "action": "R",
            "recorded": "2026-12-03T00:00:00+00:00", "outcome": "0",
            "agent": [{"requestor": True, "who": {"display": f"reader-{n}"}}],
            "source": {"observer": {"display": "telefhir"}}}


def test_concurrent_events_are_each_logged_once(store: ResourceStore) -> None:
    writer = AuditWriter(store)
    threads, each = 24, 40  # 960 events: several commits of at most MAX_ROWS
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(each):
                writer.wait(writer.submit(_event(t * each + i)))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    one_batch = [_event(10_000 + i) for i in range(MAX_ROWS * 2 + 5)]
    writer.write(one_batch)  # one thread, more rows than a commit carries

    total = threads * each + len(one_batch)
    rows = store.query("SELECT body FROM audit_log")
    assert len(rows) == total
    whos = {str(b) for (b,) in rows}
    assert len(whos) == total  # each event once (distinct ids and agents)
    with store.transaction() as tx:
        assert flush(tx) == total
    assert store.query("SELECT count(*) FROM audit_log") == [(0,)]
    stored = store.query("SELECT count(*) FROM resources WHERE res_type = 'AuditEvent'")
    assert stored == [(total,)]


def test_a_failed_commit_fails_its_waiters(store: ResourceStore) -> None:
    writer = AuditWriter(store)
    store.ensure_tables(["DROP TABLE audit_log"])
    with pytest.raises(AuditWriteFailed):
        writer.write([_event(1), _event(2)])
    store.ensure_tables(["CREATE TABLE audit_log (id TEXT PRIMARY KEY, recorded_us BIGINT "
                         "NOT NULL, body TEXT NOT NULL)"])
    writer.write([_event(3)])  # the writer carries on once the table is back
    assert store.query("SELECT count(*) FROM audit_log") == [(1,)]
