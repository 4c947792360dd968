"""SQL shared by the SQLite and PostgreSQL stores: one builder, two dialects.

Writes follow https://hl7.org/fhir/R4/http.html#versioning: each write adds one row to
`resource_versions`, moves the `resources` row to that version and replaces its index rows,
all inside one database transaction. Optimistic concurrency: a version row can be written
once only, so two writers that read the same version cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Protocol

from fhir_server.store.base import HistoryQuery, StoredResource, VersionConflict
from fhir_server.store.dialect import Dialect
from resources import json_numbers

IndexRows = dict[str, list[tuple[Any, ...]]]


class RowIndexer(Protocol):
    """Turns a resource into index rows per table (fhir_server.search.indexer.Indexer)."""

    def rows(self, resource: dict[str, Any]) -> IndexRows:
        """Index rows per table, columns in INDEX_TABLES order without res_pk."""
        ...


class Cursorish(Protocol):
    """The part of a DB-API cursor the stores use."""

    @property
    def description(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


Execute = Callable[[str, Sequence[Any]], Cursorish]
ExecuteMany = Callable[[str, list[tuple[Any, ...]]], None]

_CURRENT_COLS = "res_type, res_id, version, last_updated_us, deleted"


def _stored(row: Sequence[Any], method: str = "PUT") -> StoredResource:
    body = row[5]
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif isinstance(body, memoryview):
        body = bytes(body)
    return StoredResource(
        res_type=row[0],
        res_id=row[1],
        version=int(row[2]),
        last_updated_us=int(row[3]),
        deleted=bool(row[4]),
        body=body,
        method=row[6] if len(row) > 6 else method,
    )


@lru_cache(maxsize=16)
def _index_statements(
    dialect: Dialect, tables: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[dict[str, str], dict[str, str]]:
    """INSERT and DELETE statements per index table (shared, never mutated)."""
    insert = {
        t: dialect.sql(
            f"INSERT INTO {t} (res_pk, {', '.join(cols)}) "
            f"VALUES (?, {', '.join('?' for _ in cols)})"
        )
        for t, cols in tables
    }
    delete = {t: dialect.sql(f"DELETE FROM {t} WHERE res_pk = ?") for t, _ in tables}
    return insert, delete


@lru_cache(maxsize=512)
def _json_insert(tables: tuple[str, ...]) -> str:
    """One PostgreSQL statement that inserts the rows of several index tables, each given as
    a JSON array of row objects read with the table's own row type: one round trip per
    resource instead of one per table (data-modifying WITH,
    https://www.postgresql.org/docs/15/queries-with.html#QUERIES-WITH-MODIFYING;
    json_populate_recordset, https://www.postgresql.org/docs/15/functions-json.html)."""
    parts = [
        f"INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, %s::json)"
        for t in tables
    ]
    if len(parts) == 1:
        return parts[0]
    ctes = ", ".join(f"w{i} AS ({p})" for i, p in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}"


@lru_cache(maxsize=16)
def _json_delete(tables: tuple[str, ...]) -> str:
    """One PostgreSQL statement that deletes a resource's rows from every index table."""
    parts = [f"DELETE FROM {t} WHERE res_pk = %s" for t in tables]
    ctes = ", ".join(f"w{i} AS ({p})" for i, p in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}" if ctes else parts[-1]


class SqlOps:
    """Statements over one connection's execute functions; shared by both backends."""

    def __init__(
        self,
        dialect: Dialect,
        execute: Execute,
        executemany: ExecuteMany,
        index_tables: dict[str, tuple[str, ...]],
        indexer: RowIndexer | None,
        integrity_errors: tuple[type[BaseException], ...],
    ) -> None:
        self.dialect = dialect
        self._execute = execute
        self._executemany = executemany
        self._tables = index_tables
        self._indexer = indexer
        self._integrity = integrity_errors
        self._body = dialect.json_select("body")
        # the statements of reads by id, in the driver's style, built once (the same str
        # object each time, so its hash is cached for the driver's statement caches)
        current = f"SELECT {_CURRENT_COLS}, {self._body} FROM resources WHERE res_type = ? " \
                  "AND res_id = ?"
        self._read_sql = dialect.sql(current)
        self._read_for_update_sql = dialect.sql(current + dialect.for_update)
        self._vread_sql = dialect.sql(
            f"SELECT {_CURRENT_COLS}, {self._body}, method FROM resource_versions "
            "WHERE res_type = ? AND res_id = ? AND version = ?"
        )
        # Built once per table set: the PostgreSQL store makes a SqlOps for every read.
        self._insert_sql, self._delete_sql = _index_statements(
            dialect, tuple(index_tables.items())
        )

    def run(self, sql: str, args: Sequence[Any] = ()) -> Cursorish:
        """Execute `?`-style SQL."""
        return self._execute(self.dialect.sql(sql), args)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute `?`-style SQL and fetch every row (none for statements without rows)."""
        cur = self.run(sql, args)
        if cur.description is None:
            return []
        return [tuple(r) for r in cur.fetchall()]

    # -- reads ---------------------------------------------------------------------------

    def read(self, res_type: str, res_id: str) -> StoredResource | None:
        row = self._execute(self._read_sql, (res_type, res_id)).fetchone()
        return _stored(row) if row else None

    def read_for_update(self, res_type: str, res_id: str) -> StoredResource | None:
        """Current version, row-locked until the transaction ends where the dialect can."""
        row = self._execute(self._read_for_update_sql, (res_type, res_id)).fetchone()
        return _stored(row) if row else None

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource | None:
        row = self._execute(self._vread_sql, (res_type, res_id, version)).fetchone()
        return _stored(row) if row else None

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        out: dict[int, StoredResource] = {}
        pks = list(pks)
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self.query(
                f"SELECT {_CURRENT_COLS}, {self._body}, pk FROM resources "
                f"WHERE pk IN ({marks})",
                chunk,
            ):
                out[int(row[6])] = _stored(row[:6])
        return out

    def history(self, q: HistoryQuery) -> tuple[list[StoredResource], int]:
        """Versions newest first (https://hl7.org/fhir/R4/http.html#history)."""
        where: list[str] = []
        args: list[Any] = []
        if q.res_type is not None:
            where.append("v.res_type = ?")
            args.append(q.res_type)
        if q.res_id is not None:
            where.append("v.res_id = ?")
            args.append(q.res_id)
        if q.since_us is not None:
            where.append("v.last_updated_us >= ?")
            args.append(q.since_us)
        if q.until_us is not None:
            where.append("v.last_updated_us <= ?")
            args.append(q.until_us)
        if q.at_range is not None:
            # current at some time in [lo, hi]: made by hi, and not replaced before lo
            where.append("v.last_updated_us <= ?")
            args.append(q.at_range[1])
            where.append(
                "NOT EXISTS (SELECT 1 FROM resource_versions n WHERE n.res_type = v.res_type "
                "AND n.res_id = v.res_id AND n.version > v.version AND n.last_updated_us <= ?)"
            )
            args.append(q.at_range[0])
        if q.visible_sql is not None:
            where.append("EXISTS (SELECT 1 FROM resources r WHERE r.res_type = v.res_type "
                         f"AND r.res_id = v.res_id AND {q.visible_sql})")
            args.extend(q.visible_args)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        total = int(self.query(f"SELECT COUNT(*) FROM resource_versions v {clause}", args)[0][0])
        rows = self.query(
            f"SELECT v.res_type, v.res_id, v.version, v.last_updated_us, v.deleted, "
            f"{self.dialect.json_select('v.body')}, v.method FROM resource_versions v {clause} "
            "ORDER BY v.last_updated_us DESC, v.res_type, v.res_id, v.version DESC "
            "LIMIT ? OFFSET ?",
            [*args, q.count, q.offset],
        )
        return [_stored(r) for r in rows], total

    # -- writes --------------------------------------------------------------------------

    def put(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        body: bytes,
        version: int,
        method: str,
        last_updated_us: int,
    ) -> StoredResource:
        d = self.dialect
        jbody = d.json_param(body)
        self._insert_version(res_type, res_id, version, last_updated_us, False, method, jbody)
        if version == 1:
            try:
                row = self.run(
                    "INSERT INTO resources (res_type, res_id, version, last_updated_us, deleted, "
                    f"body) VALUES (?, ?, ?, ?, {d.bool_false}, ?) RETURNING pk",
                    (res_type, res_id, version, last_updated_us, jbody),
                ).fetchone()
            except self._integrity as exc:
                raise VersionConflict(f"{res_type}/{res_id} was created concurrently") from exc
            pk = int(row[0])
        else:
            row = self.run(
                f"UPDATE resources SET version = ?, last_updated_us = ?, deleted = {d.bool_false}, "
                "body = ? WHERE res_type = ? AND res_id = ? AND version = ? RETURNING pk",
                (version, last_updated_us, jbody, res_type, res_id, version - 1),
            ).fetchone()
            if row is None:
                raise VersionConflict(f"{res_type}/{res_id} changed concurrently")
            pk = int(row[0])
            self._drop_index(pk)
        self._write_index(pk, resource)
        return StoredResource(res_type, res_id, version, last_updated_us, False, body, method)

    def delete(
        self, res_type: str, res_id: str, version: int, last_updated_us: int
    ) -> StoredResource:
        d = self.dialect
        self._insert_version(res_type, res_id, version, last_updated_us, True, "DELETE", None)
        row = self.run(
            f"UPDATE resources SET version = ?, last_updated_us = ?, deleted = {d.bool_true}, "
            "body = NULL WHERE res_type = ? AND res_id = ? AND version = ? RETURNING pk",
            (version, last_updated_us, res_type, res_id, version - 1),
        ).fetchone()
        if row is None:
            raise VersionConflict(f"{res_type}/{res_id} changed concurrently")
        self._drop_index(int(row[0]))
        return StoredResource(res_type, res_id, version, last_updated_us, True, None, "DELETE")

    def _insert_version(
        self,
        res_type: str,
        res_id: str,
        version: int,
        last_updated_us: int,
        deleted: bool,
        method: str,
        jbody: object,
    ) -> None:
        d = self.dialect
        flag = d.bool_true if deleted else d.bool_false
        try:
            self.run(
                "INSERT INTO resource_versions (res_type, res_id, version, last_updated_us, "
                f"deleted, method, body) VALUES (?, ?, ?, ?, {flag}, ?, ?)",
                (res_type, res_id, version, last_updated_us, method, jbody),
            )
        except self._integrity as exc:
            raise VersionConflict(f"{res_type}/{res_id} version {version} exists") from exc

    def _drop_index(self, pk: int) -> None:
        if self.dialect.name == "postgresql" and self._tables:
            self._execute(_json_delete(tuple(self._tables)), (pk,) * len(self._tables))
            return
        for sql in self._delete_sql.values():
            self._execute(sql, (pk,))

    def _write_index(self, pk: int, resource: dict[str, Any]) -> None:
        if self._indexer is None:
            return
        tables = {t: rows for t, rows in self._indexer.rows(resource).items() if rows}
        if not tables:
            return
        if self.dialect.name == "postgresql":
            # One round trip for every table; PostgreSQL reads each row in the table's type.
            args = []
            for table, rows in tables.items():
                names = ("res_pk", *self._tables[table])
                objs = [dict(zip(names, (pk, *r), strict=True)) for r in rows]
                args.append(json_numbers.dumps(objs).decode())
            self._execute(_json_insert(tuple(tables)), args)
            return
        for table, rows in tables.items():
            self._executemany(self._insert_sql[table], [(pk, *r) for r in rows])

    def reindex_batch(self, res_type: str | None, after_pk: int, limit: int) -> int:
        """Rebuild index rows of up to `limit` current resources after `after_pk`; return the
        last pk done, or -1 when there are none left."""
        where = "NOT deleted AND pk > ?"
        args: list[Any] = [after_pk]
        if res_type:
            where += " AND res_type = ?"
            args.append(res_type)
        rows = self.query(
            f"SELECT pk, {self._body} FROM resources WHERE {where} ORDER BY pk LIMIT ?",
            [*args, limit],
        )
        if not rows:
            return -1
        for pk, body in rows:
            self._drop_index(int(pk))
            self._write_index(int(pk), json_numbers.loads(body))
        return int(rows[-1][0])


def reindex_all(batches: Callable[[int], int]) -> Iterator[int]:
    """Drive `batches(after_pk) -> last_pk` until done, yielding the last pk of each batch."""
    last = 0
    while True:
        last = batches(last)
        if last < 0:
            return
        yield last
