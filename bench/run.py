"""Benchmark the real server: `telefhir serve` under granian on a fresh database, driven over
HTTP by Python clients (ingest) and wrk (read-by-id, create), with the server's memory sampled
from /proc. Not part of the test run; figures are recorded in bench/README.md.

    .venv/bin/python bench/run.py --backend sqlite
    .venv/bin/python bench/run.py --backend postgresql
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    CpuMeter,
    database,
    free_port,
    process_tree,
    server,
    wait_until_quiet,
)

SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4-smart"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
INGEST_TARGET = {"sqlite": 1500, "postgresql": 1000}  # resources/s
READ_TARGET, READ_P99_TARGET, RSS_TARGET = 8000, 20, 400  # req/s, ms, MB
XML_READ_RATIO_TARGET = 0.5  # XML read req/s over JSON read req/s, same run


# -- the server and its memory --------------------------------------------------------------


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Sums VmRSS (and Pss) over the server's process tree every `interval` seconds and keeps
    the peak, overall and per phase."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss_kb = self.peak_pss_kb = 0
        self.phase = "start"
        self.phase_peak_kb: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = process_tree(self.root)
            rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.phase_peak_kb[self.phase] = max(self.phase_peak_kb.get(self.phase, 0), rss)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)


# -- phases ------------------------------------------------------------------------------------


@dataclass
class Ingest:
    """Result of posting the Synthea transaction Bundles."""

    files: int = 0
    resources: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    ids: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))

    @property
    def res_per_s(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


_local = threading.local()


def _session() -> requests.Session:
    s: requests.Session | None = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers.update({"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        _local.session = s
    return s


def warm_up(base: str, workers: int) -> None:
    """Load each worker's lazily built registries (validation, search) before timing."""
    patient = {"resourceType": "Patient", "name": [{"family": "Warmup"}]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _session().post(f"{base}/Patient", json=patient, timeout=120),
                      range(8 * workers)))
        list(pool.map(lambda _: _session().get(f"{base}/Patient?family=Warmup", timeout=120),
                      range(8 * workers)))


def ingest(base: str, files: list[Path], clients: int) -> Ingest:
    """POST every transaction Bundle with `clients` concurrent clients."""
    bodies = [(f.name, f.read_bytes()) for f in files]
    counts = {name: len(json.loads(body)["entry"]) for name, body in bodies}
    result = Ingest(files=len(bodies))

    def post(item: tuple[str, bytes]) -> tuple[str, requests.Response]:
        name, body = item
        return name, _session().post(base, data=body, timeout=600)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(post, bodies))
    result.seconds = time.perf_counter() - started
    for name, resp in responses:
        if resp.status_code != 200:
            result.failures.append(f"{name}: HTTP {resp.status_code} {resp.text[:300]}")
            continue
        result.resources += counts[name]
        for entry in resp.json().get("entry", []):
            location = entry.get("response", {}).get("location", "")
            m = re.search(r"/fhir/([A-Za-z]+)/([^/]+)/_history/", location)
            if m:
                result.ids[m.group(1)].append(m.group(2))
    return result


WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

WRK_SEED = """
local next_tid = 1
setup = function(thread) thread:set("tid", next_tid); next_tid = next_tid + 1 end
init = function(args) math.randomseed(4242 + (tid or 0)) end
"""


def lua_string(s: str) -> str:
    """A Lua long-bracket-free quoted string."""
    return json.dumps(s)  # JSON string escapes are valid Lua escapes for ASCII text


def read_script(paths: list[str], accept: str = FHIR_JSON) -> str:
    """wrk script: GET a random existing resource per request, asking for `accept`."""
    items = ",\n".join(lua_string(p) for p in paths)
    return (
        f"local paths = {{\n{items}\n}}\n"
        f'local headers = {{["Accept"] = "{accept}"}}\n'
        f"{WRK_SEED}"
        "request = function()\n"
        "  return wrk.format(\"GET\", paths[math.random(#paths)], headers)\n"
        "end\n" + WRK_DONE
    )


def create_script(patient_ids: list[str]) -> str:
    """wrk script: POST a new Patient, then an Observation about an existing patient, in turn."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:bench", "value": "b-1"}],
        "name": [{"family": "Bench", "given": ["Wrk"]}],
        "gender": "female",
        "birthDate": "1980-04-01",
    }
    observations = [
        json.dumps({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2024-01-02T10:00:00Z",
            "valueQuantity": {"value": 72, "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"},
        })
        for pid in patient_ids[:50]
    ]
    obs = ",\n".join(lua_string(o) for o in observations)
    return (
        f"local patient = {lua_string(json.dumps(patient))}\n"
        f"local observations = {{\n{obs}\n}}\n"
        'local headers = {["Content-Type"] = "application/fhir+json", '
        '["Accept"] = "application/fhir+json"}\n'
        f"{WRK_SEED}"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  if n % 2 == 1 then\n"
        '    return wrk.format("POST", "/fhir/Patient", headers, patient)\n'
        "  end\n"
        '  return wrk.format("POST", "/fhir/Observation", headers, '
        "observations[math.random(#observations)])\n"
        "end\n" + WRK_DONE
    )


def run_wrk(url: str, script: Path, threads: int, connections: int, seconds: int) -> dict[str, Any]:
    """Run wrk with `script`; its done() prints one WRKJSON line."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
           "--timeout", "10s", "-s", str(script), url]
    print(f"$ {' '.join(cmd)}", file=sys.stderr)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=seconds + 120).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    data: dict[str, Any] = json.loads(line[len("WRKJSON "):])
    secs = data["duration_us"] / 1e6
    errors = sum(data[k] for k in data if k.startswith("err_"))
    return {
        "command": " ".join(cmd),
        "requests": data["requests"],
        "seconds": secs,
        "req_s": round(data["requests"] / secs, 1),
        "p50_ms": round(data["p50_us"] / 1000, 2),
        "p90_ms": round(data["p90_us"] / 1000, 2),
        "p99_ms": round(data["p99_us"] / 1000, 2),
        "max_ms": round(data["max_us"] / 1000, 2),
        "errors": errors,
        "non_2xx": data["err_status"],
        "raw": out,
    }


def merge_runs(
    runs: list[tuple[dict[str, Any], dict[str, float]]],
) -> tuple[dict[str, Any], dict[str, float]]:
    """One result (and CPU split) from several wrk runs of one script: requests and CPU
    seconds summed, req/s over the summed durations, the median p50 and the worst p99."""
    results = [r for r, _ in runs]
    seconds = sum(r["seconds"] for r in results)
    requests = sum(r["requests"] for r in results)
    p50s = sorted(r["p50_ms"] for r in results)
    merged: dict[str, Any] = {
        "command": results[0]["command"], "runs": len(results), "requests": requests,
        "req_s": round(requests / seconds, 1) if seconds else 0.0,
        "req_s_by_run": [r["req_s"] for r in results],
        "p50_ms": p50s[len(p50s) // 2], "p90_ms": max(r["p90_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results), "max_ms": max(r["max_ms"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "non_2xx": sum(r["non_2xx"] for r in results),
    }
    cpu: dict[str, float] = {}
    for _, split in runs:
        for k, v in split.items():
            cpu[k] = cpu.get(k, 0.0) + v
    for k in cpu:
        if k.endswith("_pct"):
            cpu[k] = round(cpu[k] / len(runs), 1)
    per_request(merged, cpu)
    return merged, cpu


def per_request(result: dict[str, Any], cpu: dict[str, float]) -> None:
    """Add the server's (and database's) CPU time per request: steadier than req/s when the
    machine is shared."""
    n = max(1, result["requests"])
    result["server_cpu_us_per_req"] = round(cpu["server_cpu_s"] * 1e6 / n)
    result["database_cpu_us_per_req"] = round(cpu["database_cpu_s"] * 1e6 / n)


# -- profiling ------------------------------------------------------------------------------


@contextmanager
def profiled(enabled: bool, server_pid: int, name: str, seconds: int,
             native: bool = False) -> Iterator[None]:
    """py-spy record (raw collapsed stacks) on every worker while the block runs; --gil samples
    only the thread holding the GIL, i.e. where Python CPU time goes (`native`: every thread
    instead, with its C and Rust frames: where the rest of the CPU and the waits go)."""
    if not enabled:
        yield
        return
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    workers = [p for p in process_tree(server_pid) if p != server_pid]
    procs = []
    for pid in workers:
        out = RESULTS / f"profile-{name}-{pid}.txt"
        procs.append((out, subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--native" if native else "--gil", "--duration", str(seconds), "--nonblocking",
             "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    try:
        yield
    finally:
        for out, p in procs:
            p.wait(seconds + 60)
            print(f"profile written: {out}", file=sys.stderr)
        summarise_profiles([out for out, _ in procs], name)


def summarise_profiles(files: list[Path], name: str, top: int = 25) -> None:
    """Print the frames with most inclusive and most self samples over `files`."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            for fr in set(frames):
                inclusive[fr] += n
            own[frames[-1]] += n
    if not total:
        return
    print(f"\n== profile {name}: {total} samples ==")
    print("-- inclusive --")
    for fr, n in inclusive.most_common(top):
        print(f"{100 * n / total:5.1f}%  {fr}")
    print("-- self --")
    for fr, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {fr}")


# -- main ----------------------------------------------------------------------------------


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value < target
    return "ok" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], required=True)
    ap.add_argument("--workers", type=int, default=2, help="telefhir serve --workers")
    ap.add_argument("--threads", type=int, default=None, help="telefhir serve --threads")
    ap.add_argument("--backpressure", type=int, default=None,
                    help="telefhir serve --backpressure")
    ap.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--read-seconds", type=int, default=20,
                    help="seconds of JSON reads, and as many of XML reads")
    ap.add_argument("--read-rounds", type=int, default=4,
                    help="JSON and XML reads alternate in this many rounds")
    ap.add_argument("--create-seconds", type=int, default=15)
    ap.add_argument("--wait-quiet", type=float, default=600, metavar="SECONDS",
                    help="first wait up to this long for other work on the machine to stop "
                         "(0: do not wait)")
    ap.add_argument("--profile", choices=["ingest", "read", "xml-read", "create"],
                    action="append",
                    default=[], help="py-spy every worker during this phase (slows it down)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.wait_quiet:
        other = wait_until_quiet(10.0, args.wait_quiet)
        print(f"other work before start: {other:.0f}% of all cores", file=sys.stderr)
    files = sorted(SYNTHEA.glob("*.json"))
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    results: dict[str, Any] = {
        "backend": args.backend,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "server": {"workers": args.workers, "threads": args.threads,
                   "backpressure": args.backpressure},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    with tempfile.TemporaryDirectory(prefix="telefhir-bench-") as tmp:
        work = Path(tmp)
        extra = [f"--{k}={v}" for k, v in (("threads", args.threads),
                                            ("backpressure", args.backpressure)) if v]
        with database(args.backend, work) as (db_url, db_pids), \
                server(db_url, port, args.workers, extra, work / "server.log") as proc:
            mem = MemorySampler(proc.pid)
            mem.start()
            cpu = CpuMeter([proc.pid], db_pids)
            load: dict[str, dict[str, float]] = {}
            try:
                mem.phase = "warm-up"
                warm_up(base, args.workers)

                cpu.split()
                mem.phase = "ingest"
                with profiled("ingest" in args.profile, proc.pid, "ingest", 30):
                    ing = ingest(base, files, args.clients)
                load["ingest"] = cpu.split()
                if ing.failures:
                    print("\n".join(ing.failures), file=sys.stderr)
                results["ingest"] = {
                    "files": ing.files, "resources": ing.resources, "clients": args.clients,
                    "seconds": round(ing.seconds, 2), "res_s": round(ing.res_per_s, 1),
                    "failures": ing.failures,
                }

                paths = [f"/fhir/{t}/{i}" for t in ("Patient", "Observation")
                         for i in ing.ids.get(t, [])]
                if not paths:
                    raise SystemExit("no Patient/Observation ids from ingest; cannot go on")
                read_lua = work / "read.lua"
                read_lua.write_text(read_script(paths))
                xml_lua = work / "read-xml.lua"  # the same reads answered in XML
                xml_lua.write_text(read_script(paths, FHIR_XML))
                # JSON and XML reads alternate in rounds, so that both see the same machine
                chunk = max(1, args.read_seconds // args.read_rounds)
                runs: dict[str, list[tuple[dict[str, Any], dict[str, float]]]] = {
                    "read": [], "xml-read": []}
                for _ in range(args.read_rounds):
                    for phase, script in (("read", read_lua), ("xml-read", xml_lua)):
                        cpu.split()
                        mem.phase = phase
                        with profiled(phase in args.profile, proc.pid, phase, chunk):
                            run = run_wrk(f"http://127.0.0.1:{port}", script,
                                          args.wrk_threads, args.connections, chunk)
                        runs[phase].append((run, cpu.split()))
                read, load["read"] = merge_runs(runs["read"])
                read["ids"] = len(paths)
                results["read"] = read
                xml_read, load["xml-read"] = merge_runs(runs["xml-read"])
                xml_read["ratio_to_json"] = round(xml_read["req_s"] / max(read["req_s"], 1), 3)
                results["xml_read"] = xml_read

                create_lua = work / "create.lua"
                create_lua.write_text(create_script(ing.ids.get("Patient", [])))
                cpu.split()
                mem.phase = "create"
                with profiled("create" in args.profile, proc.pid, "create",
                              args.create_seconds):
                    results["create"] = run_wrk(f"http://127.0.0.1:{port}", create_lua,
                                                args.wrk_threads, args.connections,
                                                args.create_seconds)
                load["create"] = cpu.split()
                per_request(results["create"], load["create"])
            finally:
                mem.stop()
            results["cpu"] = load
            results["memory"] = {
                "peak_rss_mb": round(mem.peak_rss_kb / 1024, 1),
                "peak_pss_mb": round(mem.peak_pss_kb / 1024, 1),
                "peak_rss_mb_by_phase": {k: round(v / 1024, 1)
                                         for k, v in mem.phase_peak_kb.items()},
                "processes": len(process_tree(proc.pid)),
            }

    ing_r, rd, cr, memr = results["ingest"], results["read"], results["create"], results["memory"]
    xr = results["xml_read"]
    rows = [
        ("ingest (28 Synthea tx, HTTP)", f"{ing_r['res_s']:.0f} res/s",
         f">= {INGEST_TARGET[args.backend]}", verdict(ing_r["res_s"], INGEST_TARGET[args.backend])),
        ("read by id (wrk)", f"{rd['req_s']:.0f} req/s", f">= {READ_TARGET}",
         verdict(rd["req_s"], READ_TARGET)),
        ("read p50 / p99", f"{rd['p50_ms']:.2f} / {rd['p99_ms']:.2f} ms",
         f"p99 < {READ_P99_TARGET} ms", verdict(rd["p99_ms"], READ_P99_TARGET, False)),
        ("read CPU/request server+db", f"{rd['server_cpu_us_per_req']} + "
         f"{rd['database_cpu_us_per_req']} us", "-", ""),
        ("XML read by id (wrk)", f"{xr['req_s']:.0f} req/s = {100 * xr['ratio_to_json']:.0f}%",
         f">= {100 * XML_READ_RATIO_TARGET:.0f}% JSON",
         verdict(xr["ratio_to_json"], XML_READ_RATIO_TARGET)),
        ("XML read p50 / p99", f"{xr['p50_ms']:.2f} / {xr['p99_ms']:.2f} ms", "-", ""),
        ("XML read CPU/request server+db", f"{xr['server_cpu_us_per_req']} + "
         f"{xr['database_cpu_us_per_req']} us", "-", ""),
        ("create (wrk)", f"{cr['req_s']:.0f} req/s", "-", ""),
        ("create p50 / p99", f"{cr['p50_ms']:.2f} / {cr['p99_ms']:.2f} ms", "-", ""),
        ("create CPU/request server+db", f"{cr['server_cpu_us_per_req']} + "
         f"{cr['database_cpu_us_per_req']} us", "-", ""),
        ("server peak RSS (sum)", f"{memr['peak_rss_mb']:.0f} MB (PSS {memr['peak_pss_mb']:.0f})",
         f"< {RSS_TARGET} MB", verdict(memr["peak_rss_mb"], RSS_TARGET, False)),
    ]
    print(f"\ntelefhir bench: backend={args.backend} workers={args.workers} "
          f"threads={args.threads or 'default'} backpressure={args.backpressure or 'default'} "
          f"cpus={os.cpu_count()}")
    print(f"{'measure':32} {'result':28} {'target':12} ")
    for name, value, target, ok in rows:
        print(f"{name:32} {value:28} {target:12} {ok}")
    print("CPU by phase, % of all cores: server / database / wrk+clients / others")
    for k, v in results["cpu"].items():
        print(f"  {k:8} {v['server_pct']:5.0f} {v['database_pct']:5.0f} {v['clients_pct']:5.0f} "
              f"{v['others_pct']:5.0f}")
    if any(v["others_pct"] > 10 for v in results["cpu"].values()):
        print("WARNING: other work competed for the CPU; these figures are not representative")
    errs = rd["errors"] + xr["errors"] + cr["errors"]
    if errs or ing_r["failures"]:
        print(f"WARNING: read errors {rd['errors']}, XML read errors {xr['errors']}, create "
              f"errors {cr['errors']}, ingest failures {len(ing_r['failures'])}")
    for phase in ("read", "xml_read", "create"):
        results[phase].pop("raw", None)
    out = RESULTS / f"{args.backend}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
