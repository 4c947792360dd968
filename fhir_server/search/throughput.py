"""Measure the indexer on transaction Bundles (Synthea): resources indexed per second, one core.

Usage: ``python -m fhir_server.search.throughput /work/shared/data/synthea-r4-smart [rounds]``.
The write path indexes every resource in its write transaction
(https://hl7.org/fhir/R4/search.html), so this bounds ingest speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson

from fhir_server.search.indexer import Indexer


def load(folder: Path) -> list[dict[str, Any]]:
    """entry[].resource of every Bundle file in `folder`."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
    return out


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
