"""Benchmark `Observation/$lastn` and `Patient/$everything` over HTTP with wrk
(https://hl7.org/fhir/R4/observation-operation-lastn.html,
https://hl7.org/fhir/R4/patient-operation-everything.html). Not part of the test run; figures
go to bench/README.md.

    .venv/bin/python bench/operations.py lastn --backend sqlite
        # on the search benchmark's database (bench/search/run.py load first)
    .venv/bin/python bench/operations.py everything --backend sqlite
        # a fresh database, the 28 Synthea transaction Bundles POSTed, then every patient

Each request path is drawn at random from a file by bench/search/paths.lua (wrk -t2 -c4, as
the search benchmark), after a 5 s warm-up and once the machine is quiet.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import wait_until_quiet  # noqa: E402

from fhir_server.app import open_store  # noqa: E402


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


search_bench = _module("search_bench", HERE / "search" / "run.py")  # server, wrk, shape, save
main_bench = _module("main_bench", HERE / "run.py")  # database, ingest, SYNTHEA

TARGETS = {"lastn": 50.0, "everything": 100.0}  # p95 ms


def lastn_paths(url: str) -> dict[str, list[str]]:
    """Per patient of the search data set: the newest vital sign of each code; the last 3
    of each vital sign and lab; inside the compartment, as fhirpy calls it."""
    store = open_store(url)
    try:
        ids = [r[0] for r in store.query(
            "SELECT res_id FROM resources WHERE res_type = ? ORDER BY res_id", ["Patient"])]
    finally:
        store.close()
    return {
        "lastn-vitals": [f"/fhir/Observation/$lastn?patient=Patient/{i}&category=vital-signs"
                         for i in ids],
        "lastn-max3": [f"/fhir/Observation/$lastn?patient={i}&category=vital-signs,laboratory"
                       "&max=3" for i in ids],
        "lastn-compartment": [f"/fhir/Patient/{i}/Observation/$lastn?category=laboratory"
                              for i in ids],
    }


def measure(base: str, name: str, paths: list[str], seconds: int, workdir: Path,
            target: float, wait: float) -> dict[str, Any]:
    paths_file = workdir / f"paths-{name}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    info = search_bench.shape(base, random.Random(1).sample(paths, min(200, len(paths))))
    search_bench.wrk(base, paths_file, 5, 2, 4)  # warm-up
    others = wait_until_quiet(15.0, wait)
    stats: dict[str, Any] = search_bench.wrk(base, paths_file, seconds, 2, 4)
    stats.update(info, target_p95_ms=target, met=stats["p95_ms"] < target,
                 others_busy_before_pct=others)
    print(f"{name:18} p50 {stats['p50_ms']:6.1f}  p95 {stats['p95_ms']:6.1f}  p99 "
          f"{stats['p99_ms']:6.1f} ms  {stats['req_s']:7.1f} req/s  (target p95 < {target:.0f}"
          f" ms: {'met' if stats['met'] else 'MISSED'}); {info}", flush=True)
    return stats


def run_lastn(backend: str, seconds: int, wait: float) -> dict[str, Any]:
    url = search_bench.db_url(backend)
    paths = lastn_paths(url)
    out: dict[str, Any] = {"backend": backend, "operation": "lastn"}
    with tempfile.TemporaryDirectory() as tmp, \
            search_bench.server(url, 2, Path(tmp) / "serve.log") as base:
        for name, ps in paths.items():
            out[name] = measure(base, name, ps, seconds, Path(tmp), TARGETS["lastn"], wait)
    search_bench.save(f"lastn-{backend}", out)
    return out


def run_everything(backend: str, seconds: int, wait: float) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "operation": "everything"}
    files = sorted(main_bench.SYNTHEA.glob("*.json"))
    with tempfile.TemporaryDirectory() as tmp, \
            main_bench.database(backend, Path(tmp)) as (url, _pids), \
            search_bench.server(url, 2, Path(tmp) / "serve.log") as base:
        loaded = main_bench.ingest(base + "/fhir", files, 4)
        if loaded.failures:
            raise SystemExit(f"ingest failed: {loaded.failures[:3]}")
        ids = sorted(set(loaded.ids["Patient"]))
        sizes = [requests.get(f"{base}/fhir/Patient/{i}/$everything?_count=1&_summary=count",
                              timeout=60).json()["total"] for i in ids]
        out["patients"], out["ingested"] = len(ids), loaded.resources
        out["record_sizes"] = {"mean": round(sum(sizes) / len(sizes), 1), "max": max(sizes),
                               "min": min(sizes)}
        print(f"{len(ids)} patients, {loaded.resources} resources; compartment sizes "
              f"{out['record_sizes']}", flush=True)
        variants = {
            "everything-whole": [f"/fhir/Patient/{i}/$everything?_count=1000" for i in ids],
            "everything-page": [f"/fhir/Patient/{i}/$everything" for i in ids],
        }
        for name, ps in variants.items():
            out[name] = measure(base, name, ps, seconds, Path(tmp), TARGETS["everything"],
                                wait)
    search_bench.save(f"everything-{backend}", out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("operation", choices=["lastn", "everything"])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--seconds", type=int, default=20, help="wrk duration per variant")
    ap.add_argument("--wait-quiet", type=float, default=300.0,
                    help="seconds to wait for other work under 15 %% before each measurement")
    args = ap.parse_args()
    run = run_lastn if args.operation == "lastn" else run_everything
    print(json.dumps(run(args.backend, args.seconds, args.wait_quiet), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
