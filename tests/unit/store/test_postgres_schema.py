"""PostgreSQL schema details: key columns in byte order (COLLATE "C", like the index tables),
and the upgrade of a database made before they were."""

from __future__ import annotations

import orjson
import psycopg

from fhir_server.store.postgres import PostgresStore
from tests.pg import pg_server

_OLD_RESOURCES = """CREATE TABLE resources (
    pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, res_type TEXT NOT NULL,
    res_id TEXT NOT NULL, version INTEGER NOT NULL, last_updated_us BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL, body JSONB, UNIQUE (res_type, res_id))"""
_OLD_VERSIONS = """CREATE TABLE resource_versions (
    res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,
    last_updated_us BIGINT NOT NULL, deleted BOOLEAN NOT NULL, method TEXT NOT NULL,
    body JSONB, PRIMARY KEY (res_type, res_id, version))"""


def _collations(url: str) -> set[str | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_name IN ('resources', 'resource_versions') "
            "AND column_name IN ('res_type', 'res_id')"
        ).fetchall()
    return {r[0] for r in rows}


def test_new_database_has_byte_ordered_keys() -> None:
    url = pg_server().new_database()
    PostgresStore(url).close()
    assert _collations(url) == {"C"}


def test_older_database_is_upgraded_and_keeps_its_rows() -> None:
    url = pg_server().new_database()
    body = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    with psycopg.connect(url) as conn:
        conn.execute(_OLD_RESOURCES)
        conn.execute(_OLD_VERSIONS)
        conn.execute("INSERT INTO resources (res_type, res_id, version, last_updated_us, "
                     "deleted, body) VALUES ('Patient', 'p1', 1, 1, FALSE, %s)",
                     (orjson.dumps(body).decode(),))
        conn.execute("INSERT INTO resource_versions VALUES ('Patient', 'p1', 1, 1, FALSE, "
                     "'PUT', %s)", (orjson.dumps(body).decode(),))
    assert _collations(url) == {None}
    store = PostgresStore(url)
    try:
        assert _collations(url) == {"C"}
        stored = store.read("Patient", "p1")
        assert stored is not None and orjson.loads(stored.body or b"") == body
        assert store.vread("Patient", "p1", 1) is not None
    finally:
        store.close()
    PostgresStore(url).close()  # a second start finds nothing to change
    assert _collations(url) == {"C"}


def _body_types(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE table_name IN ('resources', 'resource_versions') AND column_name = 'body'"
        ).fetchall()
    return {str(t): str(d) for t, d in rows}


def test_jsonb_bodies_become_json_and_new_writes_keep_their_bytes() -> None:
    """A database whose bodies are JSONB (before bodies were kept as written): the columns
    turn into JSON at start, old rows read as JSONB wrote them, new rows as the server wrote
    them."""
    url = pg_server().new_database()
    old = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}, "active": True}
    with psycopg.connect(url) as conn:
        conn.execute(_OLD_RESOURCES)
        conn.execute(_OLD_VERSIONS)
        conn.execute("INSERT INTO resources (res_type, res_id, version, last_updated_us, "
                     "deleted, body) VALUES ('Patient', 'p1', 1, 1, FALSE, %s)",
                     (orjson.dumps(old).decode(),))
        conn.execute("INSERT INTO resource_versions VALUES ('Patient', 'p1', 1, 1, FALSE, "
                     "'PUT', %s)", (orjson.dumps(old).decode(),))
        as_jsonb = conn.execute("SELECT body::text FROM resources").fetchone()
    assert as_jsonb is not None and as_jsonb[0].encode() != orjson.dumps(old)  # JSONB's text
    assert _body_types(url) == {"resources": "jsonb", "resource_versions": "jsonb"}
    store = PostgresStore(url)
    try:
        assert _body_types(url) == {"resources": "json", "resource_versions": "json"}
        stored = store.read("Patient", "p1")
        assert stored is not None and stored.body == as_jsonb[0].encode()
        v1 = store.vread("Patient", "p1", 1)
        assert v1 is not None and v1.body == as_jsonb[0].encode()
        new = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}, "active": False,
               "gender": "male"}
        body = orjson.dumps(new)
        with store.transaction() as tx:
            tx.put("Patient", "p1", new, body, 2, "PUT", 2)
        assert (store.read("Patient", "p1") or stored).body == body
        # what JSONB was there for still works: the bodies are JSON to SQL
        assert store.query("SELECT body->>'gender' FROM resources") == [("male",)]
    finally:
        store.close()
    PostgresStore(url).close()  # a second start finds nothing to change
    assert _body_types(url) == {"resources": "json", "resource_versions": "json"}
