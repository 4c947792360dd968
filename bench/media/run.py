"""Media bench: how many two-party video visits the media service relays, at what latency and
loss, at what CPU per visit, and whether the FHIR API stays fast meanwhile.

    .venv/bin/python bench/media/run.py --mode passthrough --visits 20
    .venv/bin/python bench/media/run.py --mode transcode --visits 3 --fhir

The media service (`telefhir media serve`) is pinned to one core (--media-cpu) and the load
generators (bench/media/load.py, independent aiortc processes) to the others, so "visits per
core" is what one core of relay carries. With --fhir, `telefhir serve` runs beside it and a
prober reads Patients by id at a fixed rate throughout, reporting its p99. Figures and
commands are recorded in bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import BIN, free_port, server  # noqa: E402
from fhir_server.app import open_store  # noqa: E402
from operations.visits import rooms as visit_rooms  # noqa: E402
from operations.visits.rooms import Grant  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on all cores have used since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Prober(threading.Thread):
    """Reads a Patient by id every 1/rate s and keeps the latencies (an open-loop probe)."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.latencies_ms: list[float] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        http = requests.Session()
        next_t = time.monotonic()
        while not self._halt.is_set():
            t = time.monotonic()
            try:
                ok = http.get(self.url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies_ms.append((time.monotonic() - t) * 1000)
            self.errors += 0 if ok else 1
            next_t += 1 / self.rate
            self._halt.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _profile(args: argparse.Namespace, media_pid: int, load_pid: int
             ) -> list[subprocess.Popen[bytes]]:
    """py-spy (the bench extra) sampling both processes, without stopping them."""
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spy = str(BIN / "py-spy")
    return [subprocess.Popen([spy, "record", "--nonblocking", "-r", "200", "-f", "raw",
                              "-d", str(int(args.profile_seconds)), "-p", str(pid),
                              "-o", str(out / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in (("media", media_pid), ("load", load_pid))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("passthrough", "transcode"), default="passthrough")
    ap.add_argument("--visits", type=int, default=20)
    ap.add_argument("--clients", type=int, default=0,
                    help="load generator processes (default: one per 4 visits)")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=6)
    ap.add_argument("--media-cpu", default="0", help="taskset CPU list for the media service")
    ap.add_argument("--client-cpus", default="1", help="taskset CPU list for the load")
    ap.add_argument("--fhir", action="store_true", help="also probe FHIR reads meanwhile")
    ap.add_argument("--probe-rate", type=float, default=50.0)
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="py-spy record the media service and the first load process for "
                         "--profile-seconds of the window, into DIR (media.txt, load.txt: "
                         "collapsed stacks)")
    ap.add_argument("--profile-seconds", type=float, default=10)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="telefhir-media-bench-"))
    db_url = f"sqlite:///{work / 'bench.db'}"
    store = open_store(db_url)
    store.ensure_tables(visit_rooms.ddl(store))
    media_port = free_port()
    media = f"http://127.0.0.1:{media_port}/media"
    visits = []
    with store.transaction() as tx:
        for i in range(args.visits):
            room = visit_rooms.open_room(tx, f"Encounter/bench-{i}", media, 2).room
            tokens = {p: visit_rooms.issue_token(tx, Grant(room, p, f"Patient/{p}{i}", p), 3600)
                      for p in ("a", "b")}
            visits.append({"room": room, "tokens": tokens})
    store.close()

    media_cmd = ["taskset", "-c", args.media_cpu, str(BIN / "telefhir"), "media", "serve",
                 "--db", db_url, "--port", str(media_port), "--mode", args.mode]
    media_log = (work / "media.log").open("wb")
    media_proc = subprocess.Popen(media_cmd, stdout=media_log, stderr=subprocess.STDOUT)
    result: dict[str, Any] = {"mode": args.mode, "visits": args.visits,
                              "media_command": " ".join(media_cmd)}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{media}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or media_proc.poll() is not None:
                raise SystemExit(f"media service did not start; see {work / 'media.log'}")
            time.sleep(0.2)
        video_cache = work / "video.vp8"
        load_py = str(Path(__file__).with_name("load.py"))
        subprocess.run(["taskset", "-c", args.client_cpus, sys.executable, load_py,
                        "--write-video", "--video-cache", str(video_cache)], check=True)
        n_clients = args.clients or max(1, (args.visits + 3) // 4)
        chunks = [visits[i::n_clients] for i in range(n_clients)]
        loads = []
        for chunk in chunks:
            cmd = ["taskset", "-c", args.client_cpus, sys.executable, load_py,
                   "--video-cache", str(video_cache), "--media", media,
                   "--visits", json.dumps(chunk), "--mode", args.mode,
                   "--warmup", str(args.warmup), "--duration", str(args.duration)]
            loads.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        for p in loads:  # wait until every load process has joined its visits
            assert p.stderr is not None
            for line in p.stderr:
                if line.strip() == "ready":
                    break
                print(line, end="", file=sys.stderr)
        time.sleep(args.warmup)
        cpu0, t0 = _cpu_seconds(media_proc.pid), time.monotonic()
        load_cpu0 = sum(_cpu_seconds(p.pid) for p in loads)
        busy0 = _machine_busy_seconds()
        profilers = _profile(args, media_proc.pid, loads[0].pid) if args.profile else []
        prober = None
        ctx = None
        if args.fhir:
            fhir_port = free_port()
            ctx = server(db_url, fhir_port, 1, [], work / "fhir.log")
            ctx.__enter__()
            pid = requests.post(f"http://127.0.0.1:{fhir_port}/fhir/Patient",
                                json={"resourceType": "Patient", "gender": "female"},
                                headers={"Content-Type": "application/fhir+json"}).json()["id"]
            prober = Prober(f"http://127.0.0.1:{fhir_port}/fhir/Patient/{pid}", args.probe_rate)
            prober.start()
        time.sleep(max(0.0, args.duration - 1.5))  # the window, less the loads' exit margin
        elapsed = time.monotonic() - t0
        media_cpu = _cpu_seconds(media_proc.pid) - cpu0
        load_cpu = sum(_cpu_seconds(p.pid) for p in loads) - load_cpu0
        busy = _machine_busy_seconds() - busy0
        outs = [p.communicate(timeout=args.duration + args.warmup + 300)[0] for p in loads]
        for prof in profilers:
            prof.wait(60)
        if prober is not None:
            prober.stop()
            result["fhir_read"] = {
                "rate_per_s": args.probe_rate, "requests": len(prober.latencies_ms),
                "errors": prober.errors,
                "p50_ms": round(_percentile(prober.latencies_ms, 0.5), 2),
                "p99_ms": round(_percentile(prober.latencies_ms, 0.99), 2),
            }
        if ctx is not None:
            ctx.__exit__(None, None, None)
    finally:
        media_proc.terminate()
        media_proc.wait(20)
        media_log.close()
    streams: dict[str, Any] = {}
    for out in outs:
        line = out.strip().splitlines()[-1] if out.strip() else "{}"
        streams.update(json.loads(line).get("streams", {}))
    lat = [x for s in streams.values() for x in s["latencies_ms"]]
    sent = sum(s["sent"] for s in streams.values())
    received = sum(s["received"] for s in streams.values())
    cpu_pct = 100 * media_cpu / elapsed
    result.update({
        "streams": len(streams), "frames_sent": sent, "frames_received": received,
        "loss_pct": round(100 * (sent - received) / sent, 3) if sent else None,
        "latency_ms": {"p50": round(_percentile(lat, 0.5), 1),
                       "p95": round(_percentile(lat, 0.95), 1),
                       "p99": round(_percentile(lat, 0.99), 1),
                       "mean": round(statistics.fmean(lat), 1) if lat else None},
        "audio_frames_per_s_per_stream_min": min(
            (s.get("audio_frames_per_s", 0) for s in streams.values()), default=None),
        "media_cpu_pct_of_one_core": round(cpu_pct, 1),
        "media_cpu_pct_per_visit": round(cpu_pct / args.visits, 2),
        "load_cpu_pct": round(100 * load_cpu / elapsed, 1),
        # everything else on the machine in the window (the FHIR server and its prober with
        # --fhir, and anything not ours): a disturbed run shows here
        "other_cpu_pct": round(100 * (busy - media_cpu - load_cpu) / elapsed, 1),
        "visits_per_core_at_this_cpu": round(args.visits / (cpu_pct / 100), 1)
        if cpu_pct else None,
        "workdir": str(work),
    })
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
