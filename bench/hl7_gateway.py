"""HL7 v2 gateway benchmark: an ADT + ORU mix over 4 MLLP connections (the `hl7` package's
MLLPClient over TCP) into SQLite, side by side in one run with the same resources POSTed as
FHIR transaction Bundles to `telefhir serve`; ACK latency; and kill -9 of the listener in the
middle of a run, counted after the restart. Not part of the test run; bench/README.md has the
commands and figures.

Workload: for each of N patients (PID-3 unique), ADT^A01, ORU^R01 (the NIST LRI CBC panel, 28
OBX), ADT^A08 and a second ORU^R01 (another filler order), sent in that order per patient and
spread round-robin over the connections (a patient's messages all go over one connection, as
an interface engine keeps a feed in order). The FHIR side posts, for each message, the
transaction Bundle `$convert-hl7v2` makes of it (the same resources, conditional creates on the
same identifiers), from 4 concurrent clients in the same per-patient order.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from hl7.client import MLLPClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BIN,
    CpuMeter,
    database,
    free_port,
    server,
    wait_until_quiet,
)
from tests.integration.hl7_support import (  # noqa: E402
    Fhir,
    original_mode,
    sample,
    set_field,
)

CONNECTIONS = 4


MIXES = ("adt+oru", "adt")
"""--mix: `adt+oru` (the issue's workload: A01, CBC ORU, A08, CBC ORU per patient, 21
resources a message) or `adt` (A01 then A08 per patient, the lighter admission feed)."""


def workload(patients: int, mix: str = "adt+oru") -> list[list[str]]:
    """Per connection, the messages it sends in order."""
    adt = original_mode(sample("ADT01-23.hl7"))
    oru = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
    feeds: list[list[str]] = [[] for _ in range(CONNECTIONS)]
    kinds: tuple[tuple[str, str | None], ...] = ((adt, "ADT^A01"), (oru, None),
                                                 (adt, "ADT^A08"), (oru, None))
    if mix == "adt":
        kinds = ((adt, "ADT^A01"), (adt, "ADT^A08"))
    for p in range(patients):
        mrn = f"B{p:06d}^^^AccMgr^MR"
        msgs = []
        for k, (base, mtype) in enumerate(kinds):
            t = set_field(base, "MSH", 10, f"P{p}-{k}")
            t = set_field(t, "MSH", 7, f"2024{1 + p % 12:02d}0{1 + k}120000+0000")
            if mtype:
                t = set_field(t, "MSH", 9, mtype)
                t = set_field(t, "EVN", 2, f"2024{1 + p % 12:02d}0{1 + k}120000+0000")
                t = set_field(t, "PV1", 19, f"V{p}^^^AccMgr^VN")
                t = set_field(t, "PID", 5, f"DUCK{k}^P{p}")
            else:
                t = set_field(t, "OBR", 3, f"F{p}-{k}^NIST Lab Filler")
            t = set_field(t, "PID", 3, mrn)
            msgs.append(t)
        feeds[p % CONNECTIONS].extend(msgs)
    return feeds


def bundles_for(feeds: list[list[str]]) -> tuple[list[list[bytes]], int]:
    """The $convert-hl7v2 Bundle of every message (made in-process, nothing stored), per
    client, and the number of resources in them."""
    from fhir_server.app import build_context, open_store
    from fhir_server.config import Config
    from hl7v2_gateway.er7 import Message
    from hl7v2_gateway.http_operations import plan_bundle
    from hl7v2_gateway.mapping import map_message
    from hl7v2_gateway.settings import GatewaySettings

    del build_context, open_store, Config
    settings = GatewaySettings()
    out: list[list[bytes]] = []
    total = 0
    for feed in feeds:
        mine = []
        for text in feed:
            bundle = plan_bundle(map_message(Message.parse(text), settings))
            total += len(bundle["entry"])
            mine.append(json.dumps(bundle).encode())
        out.append(mine)
    return out, total


def fhir_ingest(workdir: Path, per_client: list[list[bytes]], db: str,
                db_pids: list[int]) -> dict[str, Any]:
    port = free_port()
    with server(db, port, 2, [], workdir / "serve.log") as proc:
        base = f"http://127.0.0.1:{port}/fhir"
        meter = CpuMeter([proc.pid], db_pids)
        lat: list[float] = []
        errors: list[str] = []

        def run(bodies: list[bytes]) -> None:
            with requests.Session() as http:
                for body in bodies:
                    t = time.perf_counter()
                    r = http.post(base, data=body, timeout=120,
                                  headers={"Content-Type": "application/fhir+json"})
                    lat.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(r.text[:300])

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(per_client)) as pool:
            list(pool.map(run, per_client))
        wall = time.perf_counter() - t0
        cpu = meter.split()
    return {"wall_s": wall, "errors": errors[:3], "n_errors": len(errors), "cpu": cpu,
            "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * _p99(lat)}


def _p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


class ListenerProc:
    def __init__(self, db: str, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR_")}
        self.out = log.open("ab")
        self.proc = subprocess.Popen([str(BIN / "telefhir"), "hl7", "listen", "--db", db,
                                      "--port", str(port)], env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        import socket

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"listener did not start; see {log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(60)
        self.out.close()


def mllp_send(port: int, feeds: list[list[str]], lat: list[float], acked: set[str],
              stop_after: int | None = None) -> list[str]:
    """Send each feed over its own connection; the control ids not acknowledged."""
    lock = threading.Lock()
    unacked: list[str] = []

    def run(feed: list[str]) -> None:
        sent = 0
        try:
            with MLLPClient("127.0.0.1", port) as c:
                for i, text in enumerate(feed):
                    cid = text.split("\r", 1)[0].split("|")[9]
                    t = time.perf_counter()
                    ack = c.send_message(text)
                    dt = time.perf_counter() - t
                    if b"MSA|AA|" + cid.encode() not in ack:
                        raise RuntimeError(f"no AA for {cid}: {ack[:200]!r}")
                    with lock:
                        lat.append(dt)
                        acked.add(cid)
                    sent = i + 1
                    if stop_after is not None and len(acked) >= stop_after:
                        time.sleep(0.5)
        except (OSError, RuntimeError, IndexError) as exc:
            if stop_after is None:
                raise
            del exc
        with lock:
            unacked.extend(t.split("\r", 1)[0].split("|")[9] for t in feed[sent:])

    threads = [threading.Thread(target=run, args=(f,)) for f in feeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return unacked


def mllp_ingest(workdir: Path, feeds: list[list[str]], db: str,
                db_pids: list[int]) -> dict[str, Any]:
    port = free_port()
    node = ListenerProc(db, port, workdir / "listener.log")
    fhir = Fhir(db)
    try:
        meter = CpuMeter([node.proc.pid], db_pids)
        lat: list[float] = []
        acked: set[str] = set()
        t0 = time.perf_counter()
        mllp_send(port, feeds, lat, acked)
        acks_done = time.perf_counter() - t0
        counts = fhir.wait_processed(600)
        wall = time.perf_counter() - t0
        cpu = meter.split()
    finally:
        node.stop()
        fhir.close()
    return {"wall_s": wall, "acks_s": acks_done, "inbox": counts, "cpu": cpu,
            "messages": len(lat), "ack_p50_ms": 1000 * statistics.median(lat),
            "ack_p99_ms": 1000 * _p99(lat), "ack_max_ms": 1000 * max(lat)}


def kill_run(workdir: Path, feeds: list[list[str]], db: str,
             per_patient: int = 4) -> dict[str, Any]:
    """Kill -9 the listener after about half the messages are acknowledged; restart it, let
    the senders resend what was not acknowledged (as an interface engine does), count."""
    port = free_port()
    total = sum(len(f) for f in feeds)
    node = ListenerProc(db, port, workdir / "kill.log")
    lat: list[float] = []
    acked: set[str] = set()
    killer_done = threading.Event()

    def killer() -> None:
        while len(acked) < total // 2:
            time.sleep(0.005)
        node.stop(signal.SIGKILL)
        killer_done.set()

    threading.Thread(target=killer, daemon=True).start()
    unacked = mllp_send(port, feeds, lat, acked, stop_after=total // 2)
    killer_done.wait(60)
    acked_before_kill = set(acked)
    node = ListenerProc(db, port, workdir / "kill.log")
    resend = [[t for t in feed if t.split("\r", 1)[0].split("|")[9] in set(unacked)]
              for feed in feeds]
    mllp_send(port, resend, lat, acked)
    fhir = Fhir(db)
    try:
        counts = fhir.wait_processed(600)
        rows = fhir.store.query("SELECT control_id, status FROM hl7_inbox")
        reports = fhir.search("DiagnosticReport")
        patients = fhir.search("Patient")
    finally:
        node.stop()
        fhir.close()
    done = {cid for cid, status in rows if status == "done"}
    fillers = [i["value"] for r in reports for i in r["identifier"]]
    return {"messages": total, "acked_before_kill": len(acked_before_kill),
            "resent": sum(len(f) for f in resend), "inbox": counts,
            "acked_lost": sorted(acked_before_kill - done)[:10],
            "inbox_rows": len(rows), "reports": len(fillers),
            "duplicate_reports": len(fillers) - len(set(fillers)),
            "patients": len(patients),
            "expected_reports": total // 2 if per_patient == 4 else 0,
            "expected_patients": total // per_patient}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--wait-quiet", type=float, default=0)
    ap.add_argument("--skip-kill", action="store_true")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--mix", choices=MIXES, default="adt+oru",
                    help="the message mix (default adt+oru, the issue's workload)")
    args = ap.parse_args()
    if args.wait_quiet:
        wait_until_quiet(10, args.wait_quiet)
    workdir = ROOT / "bench" / "results" / time.strftime("hl7-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True)
    feeds = workload(args.patients, args.mix)
    n_messages = sum(len(f) for f in feeds)
    per_client, resources = bundles_for(feeds)
    print(f"{n_messages} messages, {resources} resources in their Bundles", file=sys.stderr)
    phases: dict[str, Path] = {}
    for name in ("fhir", "mllp", "kill"):  # a fresh database (and PostgreSQL server) each
        phases[name] = workdir / name
        phases[name].mkdir()
    with database(args.backend, phases["fhir"]) as (db, db_pids):
        fhir = fhir_ingest(workdir, per_client, db, db_pids)
    with database(args.backend, phases["mllp"]) as (db, db_pids):
        mllp = mllp_ingest(workdir, feeds, db, db_pids)
    kill = None
    if not args.skip_kill:
        with database(args.backend, phases["kill"]) as (db, _):
            kill = kill_run(workdir, feeds, db, 4 if args.mix == "adt+oru" else 2)
    result: dict[str, Any] = {
        "backend": args.backend, "mix": args.mix, "messages": n_messages,
        "resources": resources,
        "fhir": {**fhir, "res_per_s": resources / fhir["wall_s"]},
        "mllp": {**mllp, "res_per_s": resources / mllp["wall_s"],
                 "msg_per_s": n_messages / mllp["wall_s"]},
    }
    result["ratio"] = result["mllp"]["res_per_s"] / result["fhir"]["res_per_s"]
    if kill is not None:
        result["kill"] = kill
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
