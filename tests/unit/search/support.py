"""Helpers for search tests: load resources into a store the way the REST layer would."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from fhir_server.interactions.search import BodySource
from fhir_server.search.engine import SearchEngine
from fhir_server.store.base import ResourceStore

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
EXAMPLES = SHARED_DATA / "fhir-r4-examples"
SYNTHEA = SHARED_DATA / "synthea-r4-smart"
T0 = 1_600_000_000_000_000  # 2020-09-13T12:26:40Z in epoch microseconds


def put_all(store: ResourceStore, resources: Iterable[dict[str, Any]], start_us: int = T0) -> None:
    """Create each resource (version 1) in one transaction, last_updated 1 s apart."""
    with store.transaction() as tx:
        for n, res in enumerate(resources):
            at = start_us + n * 1_000_000
            res = dict(res)
            res.setdefault("meta", {})
            tx.put(res["resourceType"], res["id"], res, orjson.dumps(res), 1, "POST", at)


def example(name: str) -> dict[str, Any]:
    """An official R4 example by file stem, e.g. 'patient-example'."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def synthea_resources(n_files: int = 2) -> list[dict[str, Any]]:
    """Resources of the first Synthea bundles with urn:uuid references made `Type/id`."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted(SYNTHEA.glob("*.json"))[:n_files]:
        bundle = json.loads(path.read_text())
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
        }
        text = json.dumps([e["resource"] for e in bundle["entry"]])
        for urn, ref in ids.items():
            text = text.replace(f'"{urn}"', f'"{ref}"')
        for res in json.loads(text):
            key = (res["resourceType"], res["id"])
            if key not in seen:  # Organizations and Practitioners recur across bundles
                seen.add(key)
                out.append(res)
    return out


def ids(store: BodySource, res_type: str | None, query: str, **kw: Any) -> set[str]:
    """Ids (Type/id for system searches) of every match of `query`, following pages."""
    from urllib.parse import parse_qsl

    engine = SearchEngine()
    params = parse_qsl(query, keep_blank_values=True)
    found: set[str] = set()
    cursor: str | None = None
    while True:
        p = params + ([("_cursor", cursor)] if cursor else [])
        result = engine.search(store, res_type, p, **kw)
        bodies = store.load_bodies(result.pks)
        for pk in result.pks:
            s = bodies[pk]
            found.add(s.res_id if res_type else f"{s.res_type}/{s.res_id}")
        cursor = result.next_cursor
        if not cursor:
            return found
