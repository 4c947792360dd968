"""Benchmark the SMART layer in one run on one database: read by id with a bearer token, with
and without the audit trail, against the same read with `--no-auth` (three servers side by side,
measured in alternating short slices so that other work on the machine falls on all alike), and
the token endpoint's grants/s
(SMART Backend Services: client_credentials with a fresh RS384 assertion per request, each
verified, its jti recorded and a token stored). Driven by wrk; figures in bench/README.md.

    .venv/bin/python bench/smart.py --backend sqlite
    .venv/bin/python bench/smart.py --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import CpuMeter, free_port, process_tree, server, wait_until_quiet  # noqa: E402
from run import (  # noqa: E402
    BIN,
    RESULTS,
    SYNTHEA,
    WRK_DONE,
    WRK_SEED,
    database,
    lua_string,
    per_request,
    profiled,
    run_wrk,
)

from fhir_server.app import open_store  # noqa: E402

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TARGET = 200  # grants/s
RATIO_TARGET = 0.70  # audited bearer read / --no-auth read
P99_TARGET = 25  # ms, audited bearer read
NO_AUDIT = {"TELEFHIR_AUDIT": "0"}


def read_script(paths: list[str], token: str | None) -> str:
    """wrk script: GET a random existing resource, with the bearer token if given."""
    items = ",\n".join(lua_string(p) for p in paths)
    auth = f', ["Authorization"] = {lua_string("Bearer " + token)}' if token else ""
    return (f"local paths = {{\n{items}\n}}\n"
            f'local headers = {{["Accept"] = "application/fhir+json"{auth}}}\n'
            f"{WRK_SEED}"
            "request = function()\n"
            '  return wrk.format("GET", paths[math.random(#paths)], headers)\n'
            "end\n" + WRK_DONE)


def token_script(bodies: list[str], threads: int) -> str:
    """wrk script: POST each pre-signed assertion once (thread t takes t, t+threads, ...);
    a thread stops when its share runs out."""
    items = ",\n".join(lua_string(b) for b in bodies)
    return (f"local bodies = {{\n{items}\n}}\n"
            'local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}\n'
            "local next_tid = 1\n"
            "setup = function(thread) thread:set(\"tid\", next_tid); "
            "next_tid = next_tid + 1 end\n"
            "local i = 0\n"
            "init = function(args) i = tid end\n"
            "request = function()\n"
            "  local body = bodies[i]\n"
            "  if body == nil then wrk.thread:stop(); body = bodies[1] end\n"
            f"  i = i + {threads}\n"
            '  return wrk.format("POST", "/auth/token", headers, body)\n'
            "end\n" + WRK_DONE)


def assertion(key: Any, client_id: str, aud: str, kid: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 290,
                       "jti": str(uuid.uuid4())}, key, algorithm="RS384",
                      headers={"kid": kid})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--audit-threads", type=int, default=None,
                    help="threads (and backpressure) per worker of the audited server "
                         "(default: --threads): its requests wait on the group commit")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--read-seconds", type=int, default=5, help="length of one A/B slice")
    ap.add_argument("--slices", type=int, default=6, help="A/B slice pairs")
    ap.add_argument("--token-seconds", type=int, default=10)
    ap.add_argument("--assertions", type=int, default=12000,
                    help="pre-signed assertions for the token phase (each is used once)")
    ap.add_argument("--profile", choices=["gil", "native"], default=None,
                    help="after the slices, one more audited slice (not counted) under py-spy "
                         "(--gil, or --native: every thread); raw stacks in bench/results")
    ap.add_argument("--wait-quiet", type=int, default=0,
                    help="wait up to this many seconds for other work on the machine to stop")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="telefhir-smart-bench-"))
    results: dict[str, Any] = {"backend": args.backend, "workers": args.workers,
                               "threads": args.threads, "audit_threads": args.audit_threads,
                               "python": platform.python_version(),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with database(args.backend, work) as (db_url, db_pids):
        files = sorted(str(p) for p in SYNTHEA.glob("*.json"))
        subprocess.run([str(BIN / "telefhir"), "load", *files, "--db", db_url, "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        store = open_store(db_url)
        paths = [f"/fhir/{t}/{i}" for t, i in store.query(
            "SELECT res_type, res_id FROM resources WHERE res_type IN ('Patient', "
            "'Observation') ORDER BY pk LIMIT 5000")]
        store.close()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid="bench", alg="RS384", use="sig")
        (work / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
        reg = json.loads(subprocess.run(
            [str(BIN / "telefhir"), "apps", "register", "--name", "bench", "--backend",
             "--jwks-file", str(work / "jwks.json"), "--scopes", "system/*.rs", "--db",
             db_url], check=True, capture_output=True, text=True).stdout)
        client_id = reg["client_id"]
        extra = ["--threads", str(args.threads)]
        audit_extra = ["--threads", str(args.audit_threads or args.threads)]
        read_lua = work / "read.lua"
        read_lua.write_text(read_script(paths, None))

        def phase(name: str, url: str, script: Path, seconds: int, pids: list[int]) -> None:
            if args.wait_quiet:
                wait_until_quiet(15, args.wait_quiet)
            meter = CpuMeter(pids, db_pids)
            out = run_wrk(url, script, args.wrk_threads, args.connections, seconds)
            cpu = meter.split()
            per_request(out, cpu)
            out["cpu"] = cpu
            out.pop("raw", None)
            results[name] = out
            print(f"{name}: {out['req_s']:.0f} req/s, p50 {out['p50_ms']} ms, p99 "
                  f"{out['p99_ms']} ms, non-2xx {out['non_2xx']}, server CPU "
                  f"{out['server_cpu_us_per_req']} us/req, others {cpu['others_pct']:.0f}%",
                  file=sys.stderr)

        port_a, port_b, port_c = free_port(), free_port(), free_port()
        url_a, url_b, url_c = (f"http://127.0.0.1:{p}" for p in (port_a, port_b, port_c))
        with server(db_url, port_a, args.workers, extra, work / "serve-open.log",
                    env=NO_AUDIT) as open_proc, \
                server(db_url, port_b, args.workers, extra, work / "serve-auth.log",
                       auth=True, env=NO_AUDIT) as auth_proc, \
                server(db_url, port_c, args.workers, audit_extra, work / "serve-audit.log",
                       auth=True) as audit_proc:
            pids_a, pids_b = process_tree(open_proc.pid), process_tree(auth_proc.pid)
            pids_c = process_tree(audit_proc.pid)
            for url in (url_a, url_b, url_c):
                requests.get(f"{url}/fhir/metadata")
            token_url = f"{url_b}/auth/token"
            tok = requests.post(token_url, data={
                "grant_type": "client_credentials", "scope": "system/*.rs",
                "client_assertion_type": ASSERTION,
                "client_assertion": assertion(key, client_id, token_url, "bench")}).json()
            bearer_lua = work / "read-bearer.lua"
            bearer_lua.write_text(read_script(paths, tok["access_token"]))
            # A/B/C in alternating slices (ABC CBA ...), so that other work on the machine
            # falls on all alike; the medians are compared
            for i in range(args.slices):
                order = [("open", url_a, read_lua, pids_a), ("bearer", url_b, bearer_lua, pids_b),
                         ("audit", url_c, bearer_lua, pids_c)]
                if i % 2:
                    order.reverse()
                for name, url, script, pids in order:
                    phase(f"read_{name}_{i}", url, script, args.read_seconds, pids)
            if args.profile:
                with profiled(True, audit_proc.pid, "smart-audit", args.read_seconds,
                              native=args.profile == "native"):
                    run_wrk(url_c, bearer_lua, args.wrk_threads, args.connections,
                            args.read_seconds)
            started = time.perf_counter()
            bodies = [
                "grant_type=client_credentials&scope=system%2F*.rs"
                f"&client_assertion_type={requests.utils.quote(ASSERTION, safe='')}"
                f"&client_assertion={assertion(key, client_id, token_url, 'bench')}"
                for _ in range(args.assertions)]
            print(f"signed {len(bodies)} assertions in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
            token_lua = work / "token.lua"
            token_lua.write_text(token_script(bodies, args.wrk_threads))
            phase("token", url_b, token_lua, args.token_seconds, pids_b)
    def median(kind: str, key: str) -> float:
        return float(statistics.median(results[f"read_{kind}_{i}"][key]
                                       for i in range(args.slices)))

    noauth, bearer = median("open", "req_s"), median("bearer", "req_s")
    audited = median("audit", "req_s")
    cpu_open, cpu_bearer = (median("open", "server_cpu_us_per_req"),
                            median("bearer", "server_cpu_us_per_req"))
    cpu_audit = median("audit", "server_cpu_us_per_req")
    p99_bearer, p99_audit = median("bearer", "p99_ms"), median("audit", "p99_ms")
    tk = results["token"]
    # wrk's duration ends when the threads stop (when the assertions run out, if they do)
    grants = tk["req_s"] * (tk["requests"] - tk["non_2xx"]) / max(tk["requests"], 1)
    results["summary"] = {"read_noauth_req_s": noauth, "read_bearer_req_s": bearer,
                          "ratio": round(bearer / noauth, 3), "grants_s": round(grants, 1),
                          "cpu_us_open": cpu_open, "cpu_us_bearer": cpu_bearer,
                          "p99_ms_bearer": p99_bearer, "read_audit_req_s": audited,
                          "ratio_audit": round(audited / noauth, 3), "cpu_us_audit": cpu_audit,
                          "p99_ms_audit": p99_audit}
    name = RESULTS / f"smart-{args.backend}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    name.write_text(json.dumps(results, indent=2))
    print(f"\nread by id --no-auth: {noauth:.0f} req/s, server CPU {cpu_open:.0f} us/req "
          f"(median of {args.slices} slices of {args.read_seconds} s)")
    print(f"read by id, bearer:   {bearer:.0f} req/s = {bearer / noauth:.0%} of --no-auth, "
          f"server CPU {cpu_bearer:.0f} us/req, p99 {p99_bearer} ms (audit trail off)")
    print(f"read by id, bearer + audit: {audited:.0f} req/s = {audited / noauth:.0%} of "
          f"--no-auth (target >= {RATIO_TARGET:.0%}), server CPU {cpu_audit:.0f} us/req, "
          f"p99 {p99_audit} ms (target < {P99_TARGET} ms)")
    print(f"token endpoint:       {grants:.0f} grants/s (target >= {TOKEN_TARGET}), "
          f"p50 {tk['p50_ms']} ms, p99 {tk['p99_ms']} ms, non-2xx {tk['non_2xx']} of "
          f"{tk['requests']}")
    print(f"results: {name}")
    os.system(f"rm -rf {work}")  # noqa: S605 (our own temporary folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
