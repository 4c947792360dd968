"""The ResourceStore contract on both backends: versions, optimistic concurrency, history,
atomic transactions and index rows kept in step with the current version."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.search.schema import INDEX_TABLES
from fhir_server.store.base import HistoryQuery, ResourceStore, VersionConflict


def _put(store: ResourceStore, rid: str, version: int, body: dict[str, Any], at: int) -> None:
    resource = {"resourceType": "Patient", "id": rid, **body}
    with store.transaction() as tx:
        tx.put("Patient", rid, resource, orjson.dumps(resource), version, "PUT", at)


def _index_rows(store: ResourceStore, rid: str) -> int:
    pk = store.query("SELECT pk FROM resources WHERE res_type = ? AND res_id = ?",
                     ("Patient", rid))[0][0]
    return sum(
        int(store.query(f"SELECT COUNT(*) FROM {t} WHERE res_pk = ?", (pk,))[0][0])
        for t in INDEX_TABLES
    )


def test_versions_and_reads(store: ResourceStore) -> None:
    _put(store, "p1", 1, {"gender": "male"}, 1_000)
    _put(store, "p1", 2, {"gender": "female"}, 2_000)
    cur = store.read("Patient", "p1")
    assert cur and cur.version == 2 and not cur.deleted and cur.last_updated_us == 2_000
    assert cur.body and orjson.loads(cur.body)["gender"] == "female"
    v1 = store.vread("Patient", "p1", 1)
    assert v1 and v1.body and orjson.loads(v1.body)["gender"] == "male"
    assert store.vread("Patient", "p1", 3) is None
    assert store.read("Patient", "nope") is None


def test_stale_writer_gets_conflict_and_nothing_is_written(store: ResourceStore) -> None:
    _put(store, "p1", 1, {}, 1_000)
    _put(store, "p1", 2, {}, 2_000)
    with pytest.raises(VersionConflict):
        _put(store, "p1", 2, {"gender": "other"}, 3_000)
    with pytest.raises(VersionConflict):
        _put(store, "p1", 1, {}, 3_000)  # a second create of the same id
    cur = store.read("Patient", "p1")
    assert cur and cur.version == 2
    assert store.history(HistoryQuery(res_type="Patient", res_id="p1"))[1] == 2


def test_transaction_rolls_back_everything(store: ResourceStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        res = {"resourceType": "Patient", "id": "a"}
        tx.put("Patient", "a", res, orjson.dumps(res), 1, "POST", 1_000)
        raise RuntimeError("boom")
    assert store.read("Patient", "a") is None
    assert store.history(HistoryQuery())[1] == 0


def test_delete_keeps_history_and_drops_index_rows(store: ResourceStore) -> None:
    _put(store, "p1", 1, {"name": [{"family": "Smith"}], "gender": "male"}, 1_000)
    assert _index_rows(store, "p1") > 0
    with store.transaction() as tx:
        tx.delete("Patient", "p1", 2, 2_000)
    cur = store.read("Patient", "p1")
    assert cur and cur.deleted and cur.body is None and cur.version == 2
    assert _index_rows(store, "p1") == 0
    versions, total = store.history(HistoryQuery(res_type="Patient", res_id="p1"))
    assert total == 2 and [v.version for v in versions] == [2, 1]
    assert versions[0].method == "DELETE" and versions[0].deleted


def test_history_since_at_and_paging(store: ResourceStore) -> None:
    _put(store, "a", 1, {}, 1_000)
    _put(store, "b", 1, {}, 2_000)
    _put(store, "a", 2, {}, 3_000)
    versions, total = store.history(HistoryQuery(since_us=2_000))
    assert total == 2 and [(v.res_id, v.version) for v in versions] == [("a", 2), ("b", 1)]
    # _at 2_500: a v1 and b v1 were current then
    versions, _ = store.history(HistoryQuery(at_range=(2_500, 2_500)))
    assert sorted((v.res_id, v.version) for v in versions) == [("a", 1), ("b", 1)]
    page1, total = store.history(HistoryQuery(count=2))
    page2, _ = store.history(HistoryQuery(count=2, offset=2))
    assert total == 3 and len(page1) == 2 and len(page2) == 1
    assert store.history(HistoryQuery(until_us=1_500))[1] == 1


def test_reindex_rebuilds_rows(store: ResourceStore) -> None:
    _put(store, "p1", 1, {"name": [{"family": "Smith"}]}, 1_000)
    before = _index_rows(store, "p1")
    with store.transaction() as tx:
        for t in INDEX_TABLES:
            tx.query(f"DELETE FROM {t}")  # rows gone, as after a definition change
    assert _index_rows(store, "p1") == 0
    assert list(store.reindex())
    assert _index_rows(store, "p1") == before


def test_module_tables_share_the_resource_transaction(store: ResourceStore) -> None:
    ddl = [f"CREATE TABLE IF NOT EXISTS t_queue (pk {store.dialect.autoinc_pk}, "
           "msg TEXT NOT NULL, state TEXT NOT NULL)"]
    store.ensure_tables(ddl)
    store.ensure_tables(ddl)  # idempotent
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.query("INSERT INTO t_queue (msg, state) VALUES (?, ?)", ("lost", "new"))
        raise RuntimeError("roll back")
    with store.transaction() as tx:
        tx.query("INSERT INTO t_queue (msg, state) VALUES (?, ?)", ("kept", "new"))
    with store.transaction() as tx:
        claimed = tx.query("UPDATE t_queue SET state = 'done' WHERE state = 'new' RETURNING msg")
    assert claimed == [("kept",)]
    assert store.query("SELECT msg, state FROM t_queue") == [("kept", "done")]


# Bytes a JSONB column would not give back: keys out of alphabetical and length order,
# whitespace, a duplicate-free but unusual layout, decimals as written, escaped and raw unicode.
_EXACT = (
    '{"resourceType":"Patient","id":"exact","meta":{"versionId":"1","lastUpdated":'
    '"2026-12-03T10:00:00.000+00:00"},"name":[{"given":["Zoë","\\u00c9mile"],"family":"Ng"}],'
    '"gender":"female","active":true, "birthDate" :"1970-01-01","extension":[{"url":'
    '"http://example.org/a","valueDecimal":1.50},{"url":"http://example.org/b",'
    '"valueDecimal":1e2},{"url":"http://example.org/c","valueString":"日本語 ✓"}]}'
).encode()


def test_the_body_stored_is_the_body_served(store: ResourceStore) -> None:
    """read, vread, history and search results (load_bodies) give back the stored bytes."""
    resource = orjson.loads(_EXACT)
    with store.transaction() as tx:
        written = tx.put("Patient", "exact", resource, _EXACT, 1, "POST", 1_000)
    assert written.body == _EXACT
    cur = store.read("Patient", "exact")
    assert cur is not None and cur.body == _EXACT
    v1 = store.vread("Patient", "exact", 1)
    assert v1 is not None and v1.body == _EXACT
    versions, _ = store.history(HistoryQuery(res_type="Patient", res_id="exact"))
    assert [v.body for v in versions] == [_EXACT]
    pk = int(store.query("SELECT pk FROM resources WHERE res_id = ?", ("exact",))[0][0])
    loaded = store.load_bodies([pk])
    assert loaded[pk].body == _EXACT
    with store.transaction() as tx:
        inside = tx.read("Patient", "exact")
        assert inside is not None and inside.body == _EXACT
    # a second version too, and the first keeps its bytes
    second = _EXACT.replace(b'"versionId":"1"', b'"versionId":"2"').replace(b"1.50", b"2.50")
    with store.transaction() as tx:
        tx.put("Patient", "exact", orjson.loads(second), second, 2, "PUT", 2_000)
    assert (store.read("Patient", "exact") or cur).body == second
    assert (store.vread("Patient", "exact", 1) or cur).body == _EXACT
