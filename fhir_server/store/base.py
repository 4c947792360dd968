"""The storage interface every backend implements.

One row per current resource and one per version (https://hl7.org/fhir/R4/http.html#history);
index rows for search are written in the same database transaction as the version they describe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from fhir_server.store.dialect import Dialect


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored. `body` is the exact JSON served (None when deleted)."""

    res_type: str
    res_id: str
    version: int
    last_updated_us: int  # microseconds since the Unix epoch, UTC
    deleted: bool
    body: bytes | None
    method: str = "PUT"  # POST | PUT | PATCH | DELETE: the interaction that made this version


@dataclass(frozen=True)
class HistoryQuery:
    """Selects versions for a history interaction (https://hl7.org/fhir/R4/http.html#history)."""

    res_type: str | None = None
    res_id: str | None = None
    since_us: int | None = None  # _since: versions updated at or after
    at_range: tuple[int, int] | None = None  # _at: versions current at some time in [lo, hi]
    until_us: int | None = None  # versions made at or before (keeps pages stable while writing)
    count: int = 50
    offset: int = 0
    # only versions of resources whose current row `r` (table resources) satisfies this SQL
    # condition (with `?` placeholders and its arguments): what the caller may see
    visible_sql: str | None = None
    visible_args: tuple[Any, ...] = ()


class Queryable(Protocol):
    """Anything that runs read SQL: a store (any connection) or an open transaction."""

    dialect: Dialect

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run `sql` (with `?` placeholders) and return all rows."""
        ...


class StoreTx(Queryable, Protocol):
    """An open, atomic unit of writes: everything commits together or nothing does."""

    def read(self, res_type: str, res_id: str) -> StoredResource | None:
        """Current version (possibly a deletion), or None if the id never existed; the row stays
        locked against other writers until the transaction ends."""
        ...

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource | None:
        """One version from history, or None."""
        ...

    def history(self, q: HistoryQuery) -> tuple[list[StoredResource], int]:
        """Versions newest first, seeing this transaction's writes."""
        ...

    def lock(self, key: str) -> None:
        """Serialise with other transactions taking the same key until this one ends."""
        ...

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
        """Write version `version` (the caller saw version - 1 as current, 0 if none) whose
        serialised JSON is `body` and parsed form `resource`, and re-index it. If another writer
        got there first, raise VersionConflict."""
        ...

    def delete(
        self, res_type: str, res_id: str, version: int, last_updated_us: int
    ) -> StoredResource:
        """Record deletion version `version` (as put) and drop the resource's index rows."""
        ...

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        """Current versions by row key (for search results), seeing this transaction's writes."""
        ...


class VersionConflict(Exception):
    """Another writer changed the resource since the caller read it."""


class ResourceStore(Queryable, Protocol):
    """A FHIR resource store: SQLite and PostgreSQL implement it."""

    def transaction(self) -> AbstractContextManager[StoreTx]:
        """Open a write transaction; leaving the block commits, an exception rolls back."""
        ...

    def read(self, res_type: str, res_id: str) -> StoredResource | None:
        """Current version (possibly a deletion), or None."""
        ...

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource | None:
        """One version from history, or None."""
        ...

    def history(self, q: HistoryQuery) -> tuple[list[StoredResource], int]:
        """Versions newest first, and the total count matching."""
        ...

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        """Current versions by row key (for search results)."""
        ...

    def reindex(self, res_type: str | None = None) -> Iterator[int]:
        """Rebuild index rows; yields a running count."""
        ...

    def ensure_tables(self, ddl: Sequence[str]) -> None:
        """Run `CREATE TABLE/INDEX IF NOT EXISTS` statements of a module that keeps tables of
        its own in the store (the HL7 inbox, the authorization server's clients and keys), in
        one transaction, serialised with every other process doing the same. Such tables are
        then read and written with `query` on the store or on an open StoreTx (in the same
        transaction as resource writes); `UPDATE ... RETURNING` claims rows atomically on both
        backends."""
        ...

    def append(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Run one `?`-style write statement as a transaction of its own, committed (durable)
        when this returns: the cheapest durable append (SQLite: one autocommit statement under
        the writer lock, so one release of the interpreter lock for BEGIN, the write and
        COMMIT; PostgreSQL: one statement on a pooled connection)."""
        ...

    def defer_checkpoints(self) -> None:
        """Keep this store's commits from also checkpointing a write-ahead log (SQLite's
        automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages); the process
        then calls `checkpoint` between its transactions. PostgreSQL: nothing to defer (its
        checkpointer is a server process)."""
        ...

    def checkpoint(self) -> None:
        """Checkpoint the write-ahead log as far as it can without blocking anyone, outside
        any transaction (SQLite: PASSIVE); nothing on PostgreSQL."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    @property
    def closed(self) -> bool:
        """Whether `close` has been called (a background thread then stops quietly)."""
        ...
