"""Measure the indexer alone: resources indexed per second on one core, no storage.

Usage: ``.venv/bin/python bench/search/indexer_throughput.py PATH [rounds]`` where PATH is a
folder of transaction Bundles (Synthea: ../shared/data/synthea-r4-smart) or of NDJSON files
(bench/search/data, made by generate.py).
The write path indexes every resource in its write transaction
(https://hl7.org/fhir/R4/search.html), so this bounds ingest speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fhir_server.search.indexer import Indexer  # noqa: E402


def load(folder: Path, limit: int = 200_000) -> list[dict[str, Any]]:
    """entry[].resource of every Bundle file in `folder`, and the lines of its NDJSON files
    (the first `limit` resources; https://hl7.org/fhir/R4/nd-json.html)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as f:
            out.extend(orjson.loads(line) for line in f if line.strip())
        if len(out) >= limit:
            break
    return out[:limit]


def measure(resources: list[dict[str, Any]], rounds: int = 3) -> tuple[float, float, int]:
    """(start-up seconds, best resources/second over `rounds`, rows per pass)."""
    ix = Indexer()
    t0 = time.perf_counter()
    ix.warm(sorted({str(r["resourceType"]) for r in resources}))
    startup = time.perf_counter() - t0
    best = 0.0
    rows = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        rows = sum(len(v) for r in resources for v in ix.rows(r).values())
        best = max(best, len(resources) / (time.perf_counter() - t0))
    return startup, best, rows


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    resources = load(Path(argv[0]))
    rounds = int(argv[1]) if len(argv) > 1 else 3
    startup, rate, rows = measure(resources, rounds)
    print(
        f"{len(resources)} resources, {rows} index rows ({rows / len(resources):.1f}/resource); "
        f"compile {startup * 1000:.0f} ms; best of {rounds}: {rate:,.0f} resources/s on one core"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
