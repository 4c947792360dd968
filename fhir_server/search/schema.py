"""Search index tables: one per value kind (https://hl7.org/fhir/R4/search.html#ptypes).

Every row carries ``res_pk`` (the ``resources.pk`` it describes), ``res_type`` and ``param``.
Composite indexes lead with (res_type, param, value...) so each search parameter is one index
probe; a (res_pk, param) index serves deletes and per-resource sort keys. Text values are
clipped to ``MAX_TEXT`` characters (PostgreSQL btree rows are limited to about 2.7 kB).
"""

from __future__ import annotations

from fhir_server.store.dialect import Dialect

MAX_TEXT = 256
DATE_MIN = -(2**62)  # open start of a Period, in epoch microseconds
DATE_MAX = 2**62  # open end of a Period
NUM_MIN = -1e300  # open low end of a Range / a '<' comparator
NUM_MAX = 1e300

INDEX_TABLES: dict[str, tuple[str, ...]] = {
    # normalised (lower case, no accents, clipped) and exact text
    "idx_string": ("res_type", "param", "value_norm", "value_exact"),
    # system ('' when absent), code, normalised display/text (for :text)
    "idx_token": ("res_type", "param", "system", "code", "text_norm"),
    # the value's precision as an inclusive range of epoch microseconds (UTC)
    "idx_date": ("res_type", "param", "low_us", "high_us"),
    # number, or a Range's low/high
    "idx_number": ("res_type", "param", "low", "high"),
    # as given, plus canonical UCUM units when convertible
    "idx_quantity": (
        "res_type", "param", "system", "code", "unit", "low", "high",
        "canon_code", "canon_low", "canon_high",
    ),
    # local or absolute target (type/id parsed from the reference), its URL, its identifier
    "idx_reference": (
        "res_type", "param", "target_type", "target_id", "url", "id_system", "id_value",
    ),
    "idx_uri": ("res_type", "param", "uri"),
    # up to three components of a composite, each as (a, b, lo, hi); see fhir_server.search.values
    "idx_composite": (
        "res_type", "param",
        "c1_a", "c1_b", "c1_lo", "c1_hi",
        "c2_a", "c2_b", "c2_lo", "c2_hi",
        "c3_a", "c3_b", "c3_lo", "c3_hi",
    ),
}  # fmt: skip

_NUMERIC = {"low_us", "high_us"}
_REAL = {"low", "high", "canon_low", "canon_high"} | {
    f"c{i}_{k}" for i in (1, 2, 3) for k in ("lo", "hi")
}

_INDEXES: dict[str, list[tuple[str, ...]]] = {
    "idx_string": [("res_type", "param", "value_norm", "res_pk")],
    "idx_token": [("res_type", "param", "code", "system", "res_pk")],
    "idx_date": [
        ("res_type", "param", "low_us", "high_us", "res_pk"),
        ("res_type", "param", "high_us", "res_pk"),
    ],
    "idx_number": [("res_type", "param", "low", "high", "res_pk")],
    "idx_quantity": [
        ("res_type", "param", "code", "low", "res_pk"),
        ("res_type", "param", "canon_code", "canon_low", "res_pk"),
    ],
    "idx_reference": [
        ("res_type", "param", "target_id", "target_type", "res_pk"),
        ("res_type", "param", "url", "res_pk"),
    ],
    "idx_uri": [("res_type", "param", "uri", "res_pk")],
    "idx_composite": [("res_type", "param", "c1_b", "c2_b", "res_pk")],
}


def _column_type(d: Dialect, column: str) -> str:
    if column in _NUMERIC:
        return d.bigint_type
    if column in _REAL:
        return d.real_type
    if d.name == "postgresql":
        return 'TEXT COLLATE "C"'  # byte order, so prefix ranges work like SQLite's BINARY
    return "TEXT"


def index_ddl(d: Dialect) -> list[str]:
    """CREATE TABLE/INDEX IF NOT EXISTS statements for every index table in dialect `d`."""
    out: list[str] = []
    for table, columns in INDEX_TABLES.items():
        cols = [f"res_pk {d.bigint_type} NOT NULL"]
        for c in columns:
            null = " NOT NULL" if c in ("res_type", "param") else ""
            cols.append(f"{c} {_column_type(d, c)}{null}")
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(cols) + "\n)")
        for i, idx_cols in enumerate(_INDEXES[table]):
            out.append(
                f"CREATE INDEX IF NOT EXISTS {table}_v{i} ON {table} ({', '.join(idx_cols)})"
            )
        out.append(f"CREATE INDEX IF NOT EXISTS {table}_pk ON {table} (res_pk, param)")
    return out


def insert_sql(table: str) -> str:
    """The INSERT statement (with `?` placeholders) for rows of `table` from the Indexer."""
    cols = ("res_pk",) + INDEX_TABLES[table]
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
