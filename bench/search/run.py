"""Search at a million: load the generated data with `telefhir load`, then drive three searches
against `telefhir serve` with wrk, and EXPLAIN the SQL the engine runs for them
(https://hl7.org/fhir/R4/search.html). Not part of the test run; figures go to README.md.

    .venv/bin/python bench/search/generate.py                      # bench/search/data/*.ndjson
    .venv/bin/python bench/search/run.py load --backend sqlite     # bench/search/var/search.db
    .venv/bin/python bench/search/run.py load --backend postgresql # a PgServer under var/
    .venv/bin/python bench/search/run.py http --backend sqlite     # wrk, 3 searches
    .venv/bin/python bench/search/run.py explain --backend sqlite  # EXPLAIN of each statement
    .venv/bin/python bench/search/run.py stop-pg                   # stop the kept PostgreSQL

Results are written to bench/search/results/ (gitignored) as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.app import open_store  # noqa: E402
from fhir_server.search.engine import get_engine  # noqa: E402
from fhir_server.search.normalize import normalize_string  # noqa: E402
from fhir_server.store.base import ResourceStore  # noqa: E402
from fhir_server.store.dialect import Dialect  # noqa: E402
from tests.pg import PgServer  # noqa: E402  (the test suite's throw-away PostgreSQL)

sys.path.insert(0, str(HERE.parent))
from harness import free_port, wait_until_quiet  # noqa: E402
from harness import server as harness_server  # noqa: E402

DATA = HERE / "data"
VAR = HERE / "var"
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
SQLITE_URL = f"sqlite:///{VAR / 'search.db'}"
PG_STATE = VAR / "pg.json"
HR = "http://loinc.org|8867-4"


def q_observation(pid: str) -> str:
    """Heart rates of one patient since 2024, newest first."""
    return (f"/fhir/Observation?subject=Patient/{pid}&code={quote(HR, safe='')}"
            "&date=ge2024-01-01&_sort=-date&_count=50")


def q_patient(prefix: str) -> str:
    """Patients by name prefix born since 1970."""
    return f"/fhir/Patient?{urlencode({'name': prefix})}&birthdate=ge1970"


def q_encounter(pid: str) -> str:
    """A patient's encounters with their practitioners and observations."""
    return (f"/fhir/Encounter?patient={pid}&_include=Encounter:practitioner"
            "&_revinclude=Observation:encounter")


def q_chain(prefix: str) -> str:
    """Heart rates of patients by name prefix: a chained parameter."""
    return (f"/fhir/Observation?subject:Patient.name={prefix}&code={quote(HR, safe='')}"
            "&_count=50")


def q_has(prefix: str) -> str:
    """Patients by name prefix that have a heart rate: reverse chaining."""
    return f"/fhir/Patient?name={prefix}&_has:Observation:subject:code={quote(HR, safe='')}"


# Searches only EXPLAINed (no latency target): chains and _has at this size.
EXPLAIN_ONLY = {"chain": q_chain, "has": q_has}

SEARCHES = {  # name: (target p95 in ms, builds a path from a sample)
    "observation": (30.0, q_observation),
    "patient": (50.0, q_patient),
    "encounter": (60.0, q_encounter),
}


# -- databases ------------------------------------------------------------------------------


def db_url(backend: str) -> str:
    """The URL of the loaded database of `backend`."""
    if backend == "sqlite":
        return SQLITE_URL
    if not PG_STATE.exists():
        raise SystemExit("no PostgreSQL: run `run.py load --backend postgresql` first")
    return str(json.loads(PG_STATE.read_text())["url"])


def start_pg() -> str:
    """A PgServer cluster under var/ (kept after this process; `stop-pg` ends it)."""
    VAR.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(VAR)  # PgServer makes its cluster with tempfile.mkdtemp
    try:
        srv = PgServer()
    finally:
        tempfile.tempdir = None
    url = srv.new_database()
    state = {k: str(v) if isinstance(v, Path) else v for k, v in vars(srv).items()}
    PG_STATE.write_text(json.dumps({"url": url, "server": state}, indent=1))
    return url


def stop_pg() -> None:
    """Stop the cluster `start_pg` left running, with PgServer.stop (which removes it)."""
    if not PG_STATE.exists():
        return
    state = json.loads(PG_STATE.read_text())["server"]
    srv = PgServer.__new__(PgServer)
    srv.__dict__.update({k: Path(v) if k in ("dir", "data") else v for k, v in state.items()})
    srv.stop()
    PG_STATE.unlink()


def load(backend: str) -> dict[str, Any]:
    """`telefhir load` every generated NDJSON file into a fresh database; the loader's own
    summary line gives the rate."""
    files = sorted(str(p) for p in DATA.glob("*.ndjson"))
    if not files:
        raise SystemExit("no data: run bench/search/generate.py first")
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(str(VAR / "search.db") + suffix).unlink(missing_ok=True)
        url = SQLITE_URL
    else:
        stop_pg()
        url = start_pg()
    cmd = [str(BIN / "telefhir"), "load", "--quiet", "--db", url, *files]
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - started
    m = re.search(r"resources loaded: (\d+).*failed: (\d+).*rate: (\d+)", out)
    result = {"backend": backend, "command": " ".join(cmd[:4]) + " bench/search/data/*.ndjson",
              "summary": out.strip(), "wall_s": round(elapsed, 1),
              "loaded": int(m.group(1)) if m else None, "failed": int(m.group(2)) if m else None,
              "rate": int(m.group(3)) if m else None, "size": db_size(backend, url)}
    save(f"load-{backend}", result)
    return result


def db_size(backend: str, url: str) -> str:
    """The database's size on disk."""
    if backend == "sqlite":
        path = VAR / "search.db"
        total = sum(Path(str(path) + s).stat().st_size for s in ("", "-wal")
                    if Path(str(path) + s).exists())
        return f"{total / 2**30:.2f} GiB"
    store = open_store(url)
    try:
        return str(store.query("SELECT pg_size_pretty(pg_database_size(current_database()))")[0][0])
    finally:
        store.close()


# -- samples --------------------------------------------------------------------------------


def samples(store: ResourceStore) -> dict[str, list[str]]:
    """Request paths per search: every patient id, and 3-letter prefixes of family names
    (accents folded as the server folds them), each prefix as often as names have it."""
    ids = [r[0] for r in store.query(
        "SELECT res_id FROM resources WHERE res_type = ? ORDER BY res_id", ["Patient"])]
    prefixes: list[str] = []
    for (body,) in store.query(
        f"SELECT {store.dialect.json_select('body')} FROM resources WHERE res_type = ? "
        "ORDER BY res_id", ["Patient"]):
        doc = json.loads(body)
        family = normalize_string(doc["name"][0]["family"])
        if len(family) >= 3 and family[:3].isalpha():
            prefixes.append(family[:3])
    rng = random.Random(7)
    return {
        "observation": [q_observation(i) for i in ids],
        "patient": ["/fhir/Patient?name=smi&birthdate=ge1970"]
        + [q_patient(p) for p in rng.sample(prefixes, min(2000, len(prefixes)))],
        "encounter": [q_encounter(i) for i in ids],
    }


# -- the server and wrk ---------------------------------------------------------------------


@contextmanager
def server(url: str, workers: int, log: Path) -> Iterator[str]:
    """`telefhir serve --no-auth` on a free port until the block ends; yields its base."""
    port = free_port()
    with harness_server(url, port, workers, [], log):
        yield f"http://127.0.0.1:{port}"


def wrk(base: str, paths_file: Path, seconds: int, threads: int, conns: int) -> dict[str, Any]:
    """One wrk run; the Lua script prints the figures as JSON."""
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(HERE / "paths.lua"), base, "--", str(paths_file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    stats: dict[str, Any] = json.loads(line)
    stats["req_s"] = round(stats["requests"] / (stats["duration_us"] / 1e6), 1)
    return stats


def shape(base: str, paths: Sequence[str]) -> dict[str, Any]:
    """What the searches return: matches (total), entries per page, over some samples."""
    totals, matches, included = [], [], []
    http = requests.Session()
    for path in paths:
        resp = http.get(base + path, headers={"Accept": "application/fhir+json"}, timeout=30)
        resp.raise_for_status()
        bundle = resp.json()
        entries = bundle.get("entry", [])
        totals.append(bundle.get("total", 0))
        matches.append(sum(1 for e in entries if e["search"]["mode"] == "match"))
        included.append(sum(1 for e in entries if e["search"]["mode"] == "include"))
    n = len(paths)
    return {"samples": n, "mean_total": round(sum(totals) / n, 1), "max_total": max(totals),
            "mean_matches_on_page": round(sum(matches) / n, 1),
            "mean_included": round(sum(included) / n, 1)}


def http(backend: str, seconds: int, threads: int, conns: int, workers: int) -> dict[str, Any]:
    """wrk against each search; returns and saves the figures."""
    url = db_url(backend)
    store = open_store(url)
    try:
        paths = samples(store)
    finally:
        store.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"backend": backend, "wrk": f"-t{threads} -c{conns} -d{seconds}s",
                           "workers": workers, "loadavg_before": os.getloadavg()}
    with server(url, workers, RESULTS / f"serve-{backend}.log") as base:
        smi = requests.get(base + "/fhir/Patient?name=smi&birthdate=ge1970&_summary=count",
                           timeout=30).json()["total"]
        smi_all = requests.get(base + "/fhir/Patient?name=smi&_summary=count",
                               timeout=30).json()["total"]
        out["smi_matches"] = {"name=smi&birthdate=ge1970": smi, "name=smi": smi_all}
        for name, (target, _) in SEARCHES.items():
            paths_file = VAR / f"paths-{name}.txt"
            paths_file.write_text("\n".join(paths[name]) + "\n")
            rng = random.Random(1)
            info = shape(base, rng.sample(paths[name], min(200, len(paths[name]))))
            wrk(base, paths_file, 5, threads, conns)  # warm-up
            others_before = wait_until_quiet(15.0, 600.0)
            stats = wrk(base, paths_file, seconds, threads, conns)
            stats.update(info, target_p95_ms=target, met=stats["p95_ms"] < target,
                         others_busy_before_pct=others_before)
            out[name] = stats
            print(f"{backend:10} {name:12} p50 {stats['p50_ms']:6.1f}  p95 {stats['p95_ms']:6.1f}"
                  f"  p99 {stats['p99_ms']:6.1f} ms  {stats['req_s']:7.1f} req/s  "
                  f"(target p95 < {target:.0f} ms: {'met' if stats['met'] else 'MISSED'}); "
                  f"{info}", flush=True)
    save(f"http-{backend}", out)
    return out


# -- EXPLAIN --------------------------------------------------------------------------------


class Recorder:
    """A Queryable that records every statement the engine runs, then runs it."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.dialect: Dialect = store.dialect
        self.statements: list[tuple[str, list[Any]]] = []

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.statements.append((sql, list(args)))
        return self.store.query(sql, args)


def explain(backend: str) -> str:
    """Markdown: each search's statements with their plans (SQLite EXPLAIN QUERY PLAN,
    PostgreSQL EXPLAIN (ANALYZE, BUFFERS))."""
    url = db_url(backend)
    store = open_store(url)
    out: list[str] = [f"## EXPLAIN on {backend}\n"]
    try:
        ids = store.query("SELECT res_id FROM resources WHERE res_type = ? ORDER BY res_id",
                          ["Patient"])
        pid = str(ids[min(4321, len(ids) - 1)][0])  # the 4,322nd at full scale
        builds = {name: build for name, (_, build) in SEARCHES.items()} | EXPLAIN_ONLY
        for name, build in builds.items():
            path = build("smi" if name in ("patient", "chain", "has") else pid)
            rt, _, qs = path.removeprefix("/fhir/").partition("?")
            rec = Recorder(store)
            result = get_engine().search(rec, rt, parse_qsl(qs), strict=True)
            out.append(f"### {name}: `GET {path}`\n")
            out.append(f"{len(result.pks)} matches on the page, total {result.total}, "
                       f"{len(result.include_pks)} included.\n")
            for n, (sql, args) in enumerate(rec.statements, start=1):
                out.append(f"Statement {n}:\n\n```sql\n{sql}\n```\n\nargs: `{args}`\n")
                out.append("```\n" + plan(store, sql, args) + "\n```\n")
    finally:
        store.close()
    text = "\n".join(out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"explain-{backend}.md").write_text(text)
    return text


def plan(store: ResourceStore, sql: str, args: list[Any]) -> str:
    """The plan of one statement as text."""
    if store.dialect.name == "sqlite":
        rows = store.query("EXPLAIN QUERY PLAN " + sql, args)
        depth: dict[int, int] = {0: 0}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, 0) + 1
            lines.append("  " * (depth[node] - 1) + str(detail))
        return "\n".join(lines)
    return "\n".join(str(r[0]) for r in store.query("EXPLAIN (ANALYZE, BUFFERS) " + sql, args))


# -- main -----------------------------------------------------------------------------------


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["load", "http", "explain", "stop-pg"])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--seconds", type=int, default=30, help="wrk duration per search")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections")
    ap.add_argument("--workers", type=int, default=2, help="telefhir serve --workers")
    args = ap.parse_args()
    if args.step != "stop-pg" and shutil.which("wrk") is None and args.step == "http":
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if args.step == "load":
        print(json.dumps(load(args.backend), indent=1))
    elif args.step == "http":
        http(args.backend, args.seconds, args.threads, args.connections, args.workers)
    elif args.step == "explain":
        print(explain(args.backend))
    else:
        stop_pg()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
