"""Read by id on SQLite and PostgreSQL in one run: the same 28 Synthea Bundles loaded into both,
one `telefhir serve --no-auth` on each, side by side, measured by wrk in alternating short
slices (ABBA...) so that other work on the shared machine falls on both alike; the medians are
compared. Optionally a server on the same PostgreSQL database over its Unix socket
(`--unix-socket`), a server running the code of another commit on a database of its own in the
same cluster, loaded by that code (`--baseline DIR`, DIR from `git archive COMMIT | tar -x`),
and py-spy on the PostgreSQL server's workers (`--profile`). Figures in bench/README.md.

    .venv/bin/python bench/backends.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import CpuMeter, free_port, process_tree, server, wait_until_quiet  # noqa: E402
from run import BIN, RESULTS, SYNTHEA, per_request, profiled, read_script, run_wrk  # noqa: E402

from fhir_server.app import open_store  # noqa: E402
from tests.pg import PgServer  # noqa: E402

RATIO_TARGET = 0.60  # PostgreSQL read req/s over SQLite read req/s, same run


@contextmanager
def code_from(src: str | None) -> Iterator[None]:
    """Run `telefhir` with the packages in `src` first on its path (the baseline's code)."""
    if src is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = before


def load(db_url: str) -> list[str]:
    """Load the Synthea Bundles into `db_url`; the read paths of its Patients and Observations
    (ids are assigned by the server, so each database has its own)."""
    files = sorted(str(p) for p in SYNTHEA.glob("*.json"))
    subprocess.run([str(BIN / "telefhir"), "load", *files, "--db", db_url, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    store = open_store(db_url)
    try:
        return [f"/fhir/{t}/{i}" for t, i in store.query(
            "SELECT res_type, res_id FROM resources WHERE res_type IN ('Patient', "
            "'Observation') ORDER BY pk LIMIT 5000")]
    finally:
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--read-seconds", type=int, default=5, help="length of one slice")
    ap.add_argument("--slices", type=int, default=6, help="rounds of one slice per server")
    ap.add_argument("--unix-socket", action="store_true",
                    help="a third server on the PostgreSQL database over its Unix socket")
    ap.add_argument("--baseline", metavar="DIR",
                    help="a server running the code exported in DIR, on its own database")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy --gil on the PostgreSQL (TCP) server in its slices")
    ap.add_argument("--wait-quiet", type=int, default=0,
                    help="before each slice, wait up to this many seconds for others to stop")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="telefhir-backends-bench-"))
    results: dict[str, Any] = {"workers": args.workers, "threads": args.threads,
                               "python": platform.python_version(),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "slices": {}}
    pg = PgServer()
    try:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        pg_url = pg.new_database()
        urls = {"sqlite": f"sqlite:///{work / 'bench.db'}", "postgresql": pg_url}
        if args.unix_socket:  # libpq: host= a directory means its Unix socket
            urls["pg-unix"] = f"postgresql://postgres@/{pg_url.rsplit('/', 1)[1]}" \
                              f"?host={pg.dir}&port={pg.port}"
        paths = {"sqlite": load(urls["sqlite"]), "postgresql": load(pg_url)}
        paths["pg-unix"] = paths["postgresql"]
        src = {"pg-baseline": str(Path(args.baseline).resolve())} if args.baseline else {}
        if args.baseline:
            urls["pg-baseline"] = pg.new_database()
            with code_from(src["pg-baseline"]):
                paths["pg-baseline"] = load(urls["pg-baseline"])
        extra = ["--threads", str(args.threads)]
        with ExitStack() as stack:
            procs, scripts, bases = {}, {}, {}
            for name, db_url in urls.items():
                port = free_port()
                with code_from(src.get(name)):
                    procs[name] = stack.enter_context(
                        server(db_url, port, args.workers, extra, work / f"serve-{name}.log"))
                bases[name] = f"http://127.0.0.1:{port}"
                scripts[name] = work / f"read-{name}.lua"
                scripts[name].write_text(read_script(paths[name]))
                for p in paths[name][:200]:  # every worker's first requests, off the clock
                    requests.get(bases[name] + p, timeout=10)
            names = list(urls)
            for i in range(args.slices):
                for name in names if i % 2 == 0 else names[::-1]:
                    if args.wait_quiet:
                        wait_until_quiet(15, args.wait_quiet)
                    db = [postmaster] if name != "sqlite" else []
                    meter = CpuMeter(process_tree(procs[name].pid), db)
                    with profiled(args.profile and name == "postgresql", procs[name].pid,
                                  f"backends-read-{i}", args.read_seconds):
                        out = run_wrk(bases[name], scripts[name], args.wrk_threads,
                                      args.connections, args.read_seconds)
                    cpu = meter.split()
                    per_request(out, cpu)
                    out.pop("raw", None)
                    out["cpu"] = cpu
                    results["slices"].setdefault(name, []).append(out)
                    print(f"{name} slice {i}: {out['req_s']:.0f} req/s, p50 {out['p50_ms']} "
                          f"p99 {out['p99_ms']} ms, non-2xx {out['non_2xx']}, CPU/req server "
                          f"{out['server_cpu_us_per_req']} + db {out['database_cpu_us_per_req']}"
                          f" us, others {cpu['others_pct']:.0f}%", file=sys.stderr)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return float(statistics.median(s[key] for s in results["slices"][name]))

    summary: dict[str, Any] = {}
    for name in results["slices"]:
        summary[name] = {
            "req_s": median(name, "req_s"), "p50_ms": round(median(name, "p50_ms"), 2),
            "p99_ms": round(median(name, "p99_ms"), 2),
            "server_cpu_us": median(name, "server_cpu_us_per_req"),
            "database_cpu_us": median(name, "database_cpu_us_per_req"),
            "others_pct": [s["cpu"]["others_pct"] for s in results["slices"][name]],
            "non_2xx": sum(s["non_2xx"] for s in results["slices"][name])}
    base = summary["sqlite"]["req_s"] or 1
    for name in summary:
        summary[name]["ratio_to_sqlite"] = round(summary[name]["req_s"] / base, 3)
    results["summary"] = summary
    out_file = RESULTS / f"backends-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_file.write_text(json.dumps(results, indent=2))
    print(f"\nread by id, median of {args.slices} slices of {args.read_seconds} s "
          f"({args.workers} workers x {args.threads} threads, wrk -c{args.connections}):")
    for name, s in summary.items():
        print(f"{name:11} {s['req_s']:7.0f} req/s = {s['ratio_to_sqlite']:4.0%} of SQLite "
              f"(target >= {RATIO_TARGET:.0%}), p50 {s['p50_ms']} p99 {s['p99_ms']} ms, "
              f"CPU/req server {s['server_cpu_us']:.0f} + db {s['database_cpu_us']:.0f} us, "
              f"others {s['others_pct']} %, non-2xx {s['non_2xx']}")
    print(f"results: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
