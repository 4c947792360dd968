"""What both benchmarks need around the real server: free ports, `telefhir serve` as a
subprocess, its process tree, and the machine's CPU split between the server, the database,
the load generators and everyone else (this 2-core machine is shared). Not part of the test
run."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children[ppid].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _busy_jiffies() -> int:
    """CPU time used by the whole machine (all cores), in clock ticks, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return user + nice + system + irq + softirq + steal


def _tree_jiffies(roots: list[int], exclude: AbstractSet[int] = frozenset()) -> int:
    """utime + stime of the live processes under `roots`, less those in `exclude`."""
    total = 0
    for pid in {p for r in roots for p in process_tree(r)} - exclude:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        total += int(rest[11]) + int(rest[12])
    return total


class CpuMeter:
    """Where the machine's CPU went: the server's processes, the database's, the load
    generators (wrk, this script) and everything else ("others": other engineers' test runs on
    a shared 2-core machine make figures meaningless). Percentages are of all cores."""

    def __init__(self, server: list[int], database: list[int]) -> None:
        self.server, self.database = server, database
        self.ticks = os.sysconf("SC_CLK_TCK")
        self._start = self._now()

    def _now(self) -> tuple[float, int, int, int, int]:
        server_pids = {p for r in self.server for p in process_tree(r)}
        return (time.monotonic(), _busy_jiffies(), _tree_jiffies(self.server),
                _tree_jiffies(self.database), _tree_jiffies([os.getpid()], server_pids))

    def split(self) -> dict[str, float]:
        """Since the last split: machine busy %, and the part of each group."""
        now = self._now()
        start, self._start = self._start, now
        capacity = (now[0] - start[0]) * self.ticks * (os.cpu_count() or 1) or 1
        busy, server, db, client = ((now[i] - start[i]) / capacity for i in range(1, 5))
        return {"machine_busy_pct": round(100 * busy, 1), "server_pct": round(100 * server, 1),
                "database_pct": round(100 * db, 1), "clients_pct": round(100 * client, 1),
                "others_pct": round(100 * max(0.0, busy - server - db - client), 1),
                "server_cpu_s": (now[2] - start[2]) / self.ticks,
                "database_cpu_s": (now[3] - start[3]) / self.ticks}


def wait_until_quiet(max_other_pct: float, timeout: float) -> float:
    """Wait (up to `timeout` s) until the machine is idle but for `max_other_pct`; return the
    busy % last seen."""
    deadline = time.monotonic() + timeout
    while True:
        meter = CpuMeter([], [])
        time.sleep(3)
        other = meter.split()["others_pct"]
        if other <= max_other_pct or time.monotonic() > deadline:
            return other
        print(f"machine busy with other work ({other:.0f}% of all cores); waiting",
              file=sys.stderr)



@contextmanager
def server(db_url: str, port: int, workers: int, extra: list[str],
           log: Path, auth: bool = False,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`telefhir serve` running on `port` until the block ends (`--no-auth` unless `auth`;
    `env`: extra environment variables, e.g. TELEFHIR_AUDIT=0)."""
    cmd = [str(BIN / "telefhir"), "serve", *([] if auth else ["--no-auth"]),
           "--workers", str(workers), "--port", str(port), "--db", db_url,
           "--mllp-port", "0", "--media-port", "0", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}); see {log}")
            with suppress(requests.RequestException):
                if requests.get(f"{base}/metadata", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer within 120 s; see {log}")
            time.sleep(0.2)
        print(f"server up: {' '.join(cmd)}", file=sys.stderr)
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[str, list[int]]]:
    """A fresh, empty database URL for `backend`, and the pids of its server (PostgreSQL's
    postmaster, whose CPU time counts as ours)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}", []
        return
    from tests.pg import PgServer  # the test suite's throw-away PostgreSQL

    pg = PgServer()
    try:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        yield pg.new_database(), [postmaster]
    finally:
        pg.stop()
