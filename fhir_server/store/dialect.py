"""SQL dialects: the few places where SQLite and PostgreSQL SQL differ.

Storage and search build one SQL text per statement with `?` placeholders; the
dialect rewrites it for the driver (psycopg uses `%s`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two backends."""

    name: str
    autoinc_pk: str  # DDL for an auto-increment integer primary key column
    # column type of resource bodies: one that keeps the bytes the server wrote, so the body
    # stored is the body served (PostgreSQL's JSON keeps "an exact copy of the input text";
    # JSONB would reorder keys and rewrite numbers and escapes,
    # https://www.postgresql.org/docs/15/datatype-json.html)
    json_type: str
    bool_true: str
    bool_false: str
    for_update: str = ""  # row lock clause for reads that precede a write
    text_type: str = "TEXT"
    bigint_type: str = "BIGINT"
    real_type: str = "DOUBLE PRECISION"
    # resource type and id columns: byte order, and the same collation as the index tables'
    # text columns, so joins between them can use either side's index on PostgreSQL
    # (a comparison of two different collations takes the non-default one,
    # https://www.postgresql.org/docs/15/collation.html#COLLATION-CONCEPTS)
    key_type: str = "TEXT"
    # Whether the planner orders joins from table statistics (PostgreSQL) rather than from the
    # shape of the SQL (SQLite, which has none unless ANALYZE is run)
    plans_from_statistics: bool = False

    def sql(self, text: str) -> str:
        """Return `text` with `?` placeholders in this driver's style."""
        if self.name == "postgresql":
            return text.replace("%", "%%").replace("?", "%s")
        return text

    def unindexed(self, column: str) -> str:
        """`column` in a WHERE term the planner should not pick an index for. SQLite, which
        has no statistics, would otherwise start from a broad (res_type, ...) index; unary +
        keeps the term out of its index choice
        (https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_for_indexing).
        A planner with statistics gets the column as it is."""
        return column if self.plans_from_statistics else f"+{column}"

    def json_param(self, body: bytes) -> object:
        """The driver parameter that stores JSON bytes `body` in a `json_type` column."""
        if self.name == "postgresql":
            return body.decode("utf-8")
        return body

    def json_select(self, column: str) -> str:
        """SQL expression that reads a JSON body column back as text/bytes."""
        if self.name == "postgresql":
            return f"{column}::text"
        return column


SQLITE = Dialect(
    name="sqlite",
    autoinc_pk="INTEGER PRIMARY KEY AUTOINCREMENT",
    json_type="BLOB",
    bool_true="1",
    bool_false="0",
    real_type="REAL",
    bigint_type="INTEGER",
)

POSTGRESQL = Dialect(
    name="postgresql",
    autoinc_pk="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    json_type="JSON",
    bool_true="TRUE",
    bool_false="FALSE",
    for_update=" FOR UPDATE",
    key_type='TEXT COLLATE "C"',
    plans_from_statistics=True,
)
