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
