"""Interchange control numbers (ISA13, GS06): one counter per sender, kept in a table of our
own, taken atomically with `UPDATE ... RETURNING` so that concurrent exports, from any server
process, never share a number (X12 requires them unique per sender)."""

from __future__ import annotations

from fhir_server.store.base import ResourceStore

TABLE = "billing_x12_control"
MAX_CONTROL = 999_999_999


def _ddl(store: ResourceStore) -> list[str]:
    return [f"CREATE TABLE IF NOT EXISTS {TABLE} (sender VARCHAR(80) PRIMARY KEY, "
            "last_number BIGINT NOT NULL)"]


def next_control_number(store: ResourceStore, sender: str) -> int:
    """The next interchange control number of `sender` (1, 2, ...; wraps after 999999999)."""
    store.ensure_tables(_ddl(store))
    with store.transaction() as tx:
        tx.lock(f"{TABLE}:{sender}")
        rows = tx.query(f"UPDATE {TABLE} SET last_number = CASE WHEN last_number >= ? THEN 1 "
                        "ELSE last_number + 1 END WHERE sender = ? RETURNING last_number",
                        [MAX_CONTROL, sender])
        if not rows:
            tx.query(f"INSERT INTO {TABLE} (sender, last_number) VALUES (?, 1)", [sender])
            return 1
        return int(rows[0][0])
