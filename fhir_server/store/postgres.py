"""The PostgreSQL store (JSON bodies kept as written, psycopg 3 with a connection pool).

Stateless: every fact lives in the database, so several server processes can share one
database. Conditional writes serialise on transaction-scoped advisory locks. Pooled connections
are in autocommit mode, so a read is one round trip (no BEGIN/COMMIT around it); writes open
an explicit transaction (https://www.psycopg.org/psycopg3/docs/basic/transactions.html).
https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg_pool

from fhir_server.store.base import HistoryQuery, StoredResource, StoreTx
from fhir_server.store.dialect import POSTGRESQL
from fhir_server.store.schema import body_type_ddl, key_collation_ddl, resource_ddl
from fhir_server.store.sql import RowIndexer, SqlOps, reindex_all

# Serialises concurrent schema creation by several starting processes.
_DDL_LOCK_KEY = 0x7E1EF41


@lru_cache(maxsize=1024)
def _encoded(sql: str, encoding: str) -> bytes:
    """SQL text as the bytes psycopg sends: encoded once per statement, not per execution."""
    return sql.encode(encoding)


def _ops_for(conn: psycopg.Connection[Any], tables: dict[str, tuple[str, ...]],
             indexer: RowIndexer | None) -> SqlOps:
    encoding = conn.info.encoding

    def execute(sql: str, args: Sequence[Any]) -> Any:
        return conn.execute(_encoded(sql, encoding), args, prepare=True)

    def executemany(sql: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

    return SqlOps(POSTGRESQL, execute, executemany, tables, indexer, (psycopg.IntegrityError,))


class PostgresStore:
    """ResourceStore over a PostgreSQL database given by a libpq URL."""

    dialect = POSTGRESQL

    def __init__(
        self,
        dsn: str,
        *,
        index_tables: dict[str, tuple[str, ...]] | None = None,
        index_ddl: list[str] | None = None,
        indexer: RowIndexer | None = None,
        min_size: int = 1,
        max_size: int = 16,
    ) -> None:
        if index_tables is None:
            from fhir_server.search.indexer import get_indexer
            from fhir_server.search.schema import INDEX_TABLES
            from fhir_server.search.schema import index_ddl as make_index_ddl

            index_tables = INDEX_TABLES
            index_ddl = make_index_ddl(POSTGRESQL)
            indexer = get_indexer()
        self._tables = index_tables
        self._indexer = indexer
        # one SqlOps per pooled connection, built on its first read
        self._ops: weakref.WeakKeyDictionary[psycopg.Connection[Any], SqlOps] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = psycopg_pool.ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=True, kwargs={"autocommit": True}
        )
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            for stmt in resource_ddl(POSTGRESQL) + list(index_ddl or []):
                conn.execute(stmt)
            row = conn.execute(
                "SELECT collation_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = 'resources' AND column_name = 'res_id'"
            ).fetchone()
            for stmt in key_collation_ddl(row[0] if row else "C"):
                conn.execute(stmt)
            types = conn.execute(
                "SELECT table_name, data_type FROM information_schema.columns WHERE "
                "table_schema = current_schema() AND column_name = 'body' AND "
                "table_name IN ('resources', 'resource_versions')"
            ).fetchall()
            for stmt in body_type_ddl({str(t): str(d) for t, d in types}):
                conn.execute(stmt)

    @contextmanager
    def _read_ops(self) -> Iterator[SqlOps]:
        """Statements over a pooled connection for a read outside a transaction: the pool's
        getconn/putconn without its `with conn` (a commit or rollback call per use; in
        autocommit there is nothing to end). putconn still rolls back or discards a
        connection left in a transaction or broken."""
        conn = self._pool.getconn()
        try:
            yield self._ops_of(conn)
        finally:
            self._pool.putconn(conn)

    def _ops_of(self, conn: psycopg.Connection[Any]) -> SqlOps:
        """The SqlOps of `conn`, made on its first use."""
        ops = self._ops.get(conn)
        if ops is None:
            ops = self._ops[conn] = _ops_for(conn, self._tables, self._indexer)
        return ops

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_ops() as ops:
            return ops.query(sql, args)

    def append(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self._pool.connection() as conn:  # committed when the block ends
            conn.execute(POSTGRESQL.sql(sql), args)

    def defer_checkpoints(self) -> None:
        """The server's checkpointer process runs checkpoints, never a client's commit."""

    def checkpoint(self) -> None:
        """Nothing: the server checkpoints on its own."""

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        # commits on normal exit, rolls back on error
        with self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn, self._ops_of(conn))

    def read(self, res_type: str, res_id: str) -> StoredResource | None:
        with self._read_ops() as ops:
            return ops.read(res_type, res_id)

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource | None:
        with self._read_ops() as ops:
            return ops.vread(res_type, res_id, version)

    def history(self, q: HistoryQuery) -> tuple[list[StoredResource], int]:
        with self._read_ops() as ops:
            return ops.history(q)

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        with self._read_ops() as ops:
            return ops.load_bodies(pks)

    def reindex(self, res_type: str | None = None) -> Iterator[int]:
        def batch(after: int) -> int:
            with self._pool.connection() as conn, conn.transaction():
                return self._ops_of(conn).reindex_batch(res_type, after, 500)

        return reindex_all(batch)

    def ensure_tables(self, ddl: Sequence[str]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            for stmt in ddl:
                conn.execute(stmt)

    def close(self) -> None:
        self._pool.close()

    @property
    def closed(self) -> bool:
        return bool(self._pool.closed)


class PostgresTx:
    """An open PostgreSQL transaction on one pooled connection."""

    dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[Any], ops: SqlOps) -> None:
        self._conn = conn
        self.read = ops.read_for_update
        self.vread = ops.vread
        self.history = ops.history
        self.put = ops.put
        self.delete = ops.delete
        self.load_bodies = ops.load_bodies
        self.query = ops.query

    def lock(self, key: str) -> None:
        """Take a transaction-scoped advisory lock on a 64-bit hash of `key`."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        h = int.from_bytes(digest, "big", signed=True)
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (h,))
