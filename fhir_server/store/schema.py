"""Tables for resources and their versions (the index tables belong to fhir_server.search.schema).

`resources` holds one row per current resource; `resource_versions` one row per version
(https://hl7.org/fhir/R4/http.html#history). `pk` of `resources` is what index rows point at.
"""

from __future__ import annotations

from fhir_server.store.dialect import Dialect


def resource_ddl(d: Dialect) -> list[str]:
    """DDL for the resource and version tables."""
    return [
        f"""CREATE TABLE IF NOT EXISTS resources (
            pk {d.autoinc_pk},
            res_type {d.key_type} NOT NULL,
            res_id {d.key_type} NOT NULL,
            version INTEGER NOT NULL,
            last_updated_us {d.bigint_type} NOT NULL,
            deleted BOOLEAN NOT NULL,
            body {d.json_type},
            UNIQUE (res_type, res_id)
        )""",
        "CREATE INDEX IF NOT EXISTS resources_type_updated ON resources "
        "(res_type, last_updated_us, pk)",
        f"""CREATE TABLE IF NOT EXISTS resource_versions (
            res_type {d.key_type} NOT NULL,
            res_id {d.key_type} NOT NULL,
            version INTEGER NOT NULL,
            last_updated_us {d.bigint_type} NOT NULL,
            deleted BOOLEAN NOT NULL,
            method TEXT NOT NULL,
            body {d.json_type},
            PRIMARY KEY (res_type, res_id, version)
        )""",
        "CREATE INDEX IF NOT EXISTS resource_versions_updated ON resource_versions "
        "(last_updated_us)",
        "CREATE INDEX IF NOT EXISTS resource_versions_type_updated ON resource_versions "
        "(res_type, last_updated_us)",
    ]


def key_collation_ddl(current: str | None) -> list[str]:
    """PostgreSQL: bring the key columns of a database made before they were COLLATE "C"
    (`current` is the collation information_schema reports for resources.res_id) to it;
    the indexes on them are rebuilt."""
    if current == "C":
        return []
    return [
        f"ALTER TABLE {t} ALTER COLUMN res_type TYPE TEXT COLLATE \"C\", "
        "ALTER COLUMN res_id TYPE TEXT COLLATE \"C\""
        for t in ("resources", "resource_versions")
    ]


def body_type_ddl(current: dict[str, str]) -> list[str]:
    """PostgreSQL: turn the JSONB body columns of a database made before bodies were kept as
    written into JSON (`current`: table -> data_type information_schema reports for its body).
    The bytes of old rows are gone; they keep the text JSONB gave them, which is what they were
    served as before (https://www.postgresql.org/docs/15/sql-altertable.html)."""
    return [
        f"ALTER TABLE {t} ALTER COLUMN body TYPE JSON USING body::json"
        for t in ("resources", "resource_versions")
        if current.get(t, "json") == "jsonb"
    ]
