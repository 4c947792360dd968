"""The embedded SQLite store (WAL mode): `telefhir serve` needs nothing else installed.

Each thread has its own connection; writes take the database write lock up front
(BEGIN IMMEDIATE) so a transaction never fails half-way on a lock upgrade.
https://www.sqlite.org/wal.html

Writers first queue on a lock file beside the database (`flock(2)`, shared by every process
that opens the file through this store). SQLite's own busy handler polls with growing sleeps
(up to 100 ms) and is unfair: under concurrent creates from several server workers it left
some writers waiting about a second (bench/README.md). The queue makes them wait their turn.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fhir_server.store.base import HistoryQuery, StoredResource, StoreTx
from fhir_server.store.dialect import SQLITE
from fhir_server.store.schema import resource_ddl
from fhir_server.store.sql import RowIndexer, SqlOps, reindex_all


class _WriterQueue:
    """Serialises the write transactions of one database file: a thread lock within the
    process, an exclusive `flock` on `<db>-writer.lock` across processes."""

    def __init__(self, db_path: str) -> None:
        self._path = db_path + "-writer.lock"
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._thread_lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class SqliteStore:
    """ResourceStore over one SQLite file."""

    dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        index_tables: dict[str, tuple[str, ...]] | None = None,
        index_ddl: list[str] | None = None,
        indexer: RowIndexer | None = None,
        synchronous: str = "FULL",
    ) -> None:
        if index_tables is None:
            from fhir_server.search.indexer import get_indexer
            from fhir_server.search.schema import INDEX_TABLES
            from fhir_server.search.schema import index_ddl as make_index_ddl

            index_tables, index_ddl, indexer = INDEX_TABLES, make_index_ddl(SQLITE), get_indexer()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._tables = index_tables
        self._indexer = indexer
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writers = _WriterQueue(self.path) if self.path != ":memory:" else None
        self._defer_checkpoints = False
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        for stmt in resource_ddl(SQLITE) + list(index_ddl or []):
            conn.execute(stmt)
        conn.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA cache_size=-65536")
            if self._defer_checkpoints:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
            self._local.ops = self._make_ops(conn)
            with self._lock:
                self._all.append(conn)
        return conn

    def _make_ops(self, conn: sqlite3.Connection) -> SqlOps:
        def execute(sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
            return conn.execute(sql, args)

        def executemany(sql: str, rows: list[tuple[Any, ...]]) -> None:
            conn.executemany(sql, rows)

        return SqlOps(
            SQLITE, execute, executemany, self._tables, self._indexer,
            (sqlite3.IntegrityError,),
        )

    def _ops(self) -> SqlOps:
        self._conn()
        ops: SqlOps = self._local.ops
        return ops

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._ops().query(sql, args)

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        conn = self._conn()
        if conn.in_transaction:
            raise RuntimeError("nested store transaction on one thread")
        if self._writers is None:
            yield from self._transaction(conn)
            return
        with self._writers.turn():
            yield from self._transaction(conn)

    def append(self, sql: str, args: Sequence[Any] = ()) -> None:
        conn = self._conn()
        if conn.in_transaction:
            raise RuntimeError("store append inside a transaction on one thread")
        if self._writers is None:
            conn.execute(sql, args)
            return
        with self._writers.turn():
            conn.execute(sql, args)  # autocommit: its own transaction, committed on return

    def _transaction(self, conn: sqlite3.Connection) -> Iterator[StoreTx]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTx(self._ops())
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def defer_checkpoints(self) -> None:
        """Stop this store's connections from checkpointing the WAL when they commit.

        SQLite's automatic checkpoint (https://www.sqlite.org/wal.html#ckpt) runs inside the
        COMMIT that crosses 1000 WAL pages, so that commit returns tens of milliseconds later
        while this store still holds the writer queue. A process whose commits someone waits
        for (the HL7 listener's inbox, whose ACKs wait) defers them and lets a process that
        can afford the time call checkpoint() outside any transaction."""
        self._defer_checkpoints = True
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """A PASSIVE WAL checkpoint on this thread's connection, outside the writer queue:
        it copies what it can to the database file without blocking writers or readers."""
        conn = self._conn()
        if not conn.in_transaction:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def read(self, res_type: str, res_id: str) -> StoredResource | None:
        return self._ops().read(res_type, res_id)

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource | None:
        return self._ops().vread(res_type, res_id, version)

    def history(self, q: HistoryQuery) -> tuple[list[StoredResource], int]:
        return self._ops().history(q)

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        return self._ops().load_bodies(pks)

    def reindex(self, res_type: str | None = None) -> Iterator[int]:
        def batch(after: int) -> int:
            with self.transaction():
                return self._ops().reindex_batch(res_type, after, 500)

        return reindex_all(batch)

    def ensure_tables(self, ddl: Sequence[str]) -> None:
        with self.transaction() as tx:
            for stmt in ddl:
                tx.query(stmt)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        if self._writers is not None:
            # a write transaction of another thread (a plugin's background writer: the audit
            # trail's indexer) ends before its connection is closed under it
            with self._writers.turn():
                self._close_connections()
            self._writers.close()
            return
        self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class SqliteTx:
    """An open SQLite write transaction (BEGIN IMMEDIATE already holds the write lock)."""

    dialect = SQLITE

    def __init__(self, ops: SqlOps) -> None:
        self._ops = ops
        self.read = ops.read_for_update
        self.vread = ops.vread
        self.history = ops.history
        self.put = ops.put
        self.delete = ops.delete
        self.load_bodies = ops.load_bodies
        self.query = ops.query

    def lock(self, key: str) -> None:
        """Writers are already serialised by SQLite's database write lock."""
