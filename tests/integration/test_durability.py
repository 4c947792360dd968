"""The real `telefhir serve` (granian, 2 worker processes): every acknowledged write survives
`kill -9` of the whole process group, on SQLite and PostgreSQL; and two server processes on one
PostgreSQL database behave as one server (https://hl7.org/fhir/R4/http.html#versioning,
#concurrency)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.pg import pg_server

TELEFHIR = Path(sys.executable).parent / "telefhir"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SYS = "http://example.org/fhir/ids"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One `telefhir serve` process group."""

    def __init__(self, db: str, cwd: Path, log: Path, auth: bool = False) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR_")}
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(TELEFHIR), "serve", *(() if auth else ("--no-auth",)), "--port",
             str(self.port), "--db", db, "--workers", "2", "--mllp-port", "0",
             "--media-port", "0"],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(log)

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"telefhir serve exited: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"telefhir serve did not answer /metadata: {log.read_text()[-2000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (server and workers) and reap the leader."""
        if self.proc.poll() is None or sig == signal.SIGKILL:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self._log.close()


@contextmanager
def serving(db: str, cwd: Path, auth: bool = False) -> Iterator[Node]:
    """A node (`--no-auth` unless `auth`) that is killed (SIGKILL to its group) however the
    block ends."""
    node = Node(db, cwd, cwd / "serve.log", auth)
    try:
        yield node
    finally:
        node.kill()


class Writers:
    """Threads writing creates and updates as fast as the server answers; each 2xx answer is
    recorded as (Type/id, version) -> the marker written."""

    def __init__(self, base: str, threads: int = 4) -> None:
        self.base = base
        self.acked: dict[tuple[str, int], str] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _ack(self, resp: requests.Response, marker: str) -> None:
        if resp.status_code not in (200, 201):
            with self._lock:
                self.errors.append(f"{resp.status_code} {resp.text[:300]}")
            return
        body = resp.json()
        assert body["name"][0]["family"] == marker
        with self._lock:
            self.acked[(f"Patient/{body['id']}", int(body["meta"]["versionId"]))] = marker

    def _run(self, n: int) -> None:
        mine: list[str] = []
        seq = 0
        with requests.Session() as http:
            while not self._stop.is_set():
                seq += 1
                marker = f"w{n}-{seq}"
                try:
                    if seq % 3 == 1 or not mine:
                        r = http.post(f"{self.base}/Patient", timeout=30, headers=FHIR_JSON,
                                      json={"resourceType": "Patient",
                                            "name": [{"family": marker}]})
                        if r.status_code == 201:
                            mine.append(r.json()["id"])
                    else:
                        pid = mine[seq % len(mine)]
                        r = http.put(f"{self.base}/Patient/{pid}", timeout=30, headers=FHIR_JSON,
                                     json={"resourceType": "Patient", "id": pid,
                                           "name": [{"family": marker}]})
                except requests.RequestException:
                    return  # the server is gone: this request was never acknowledged
                self._ack(r, marker)


def _crash_and_check(db: str, cwd: Path) -> None:
    """Write, kill -9 mid-stream, restart on the same database, check every acknowledged
    version is there with what was written."""
    with serving(db, cwd) as node:
        writers = Writers(node.base)
        writers.start()
        deadline = time.monotonic() + 20
        while writers.count() < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        node.kill()  # SIGKILL to server and workers while the writers are still sending
        writers.join()
    assert not writers.errors, writers.errors[:5]
    acked = dict(writers.acked)
    assert len(acked) >= 100, len(acked)
    with serving(db, cwd) as node, requests.Session() as http:
        latest: dict[str, int] = {}
        for (ref, version), marker in acked.items():
            r = http.get(f"{node.base}/{ref}/_history/{version}", headers=FHIR_JSON)
            assert r.status_code == 200, (ref, version, r.text)
            assert r.json()["name"][0]["family"] == marker, (ref, version)
            latest[ref] = max(latest.get(ref, 0), version)
        for ref, version in latest.items():
            cur = http.get(f"{node.base}/{ref}", headers=FHIR_JSON).json()
            # a write may have committed after its answer was lost: never fewer versions
            current = int(cur["meta"]["versionId"])
            assert current >= version, (ref, current, version)
            hist = http.get(f"{node.base}/{ref}/_history", headers=FHIR_JSON).json()
            assert hist["total"] == current, ref  # every version in history, none torn
        # the restarted server keeps counting from where the database is
        ref = next(iter(latest))
        cur = http.get(f"{node.base}/{ref}", headers=FHIR_JSON).json()
        r = http.put(f"{node.base}/{ref}", json={**cur, "gender": "other"}, headers=FHIR_JSON)
        assert r.status_code == 200, r.text
        assert r.json()["meta"]["versionId"] == str(int(cur["meta"]["versionId"]) + 1)


def test_acknowledged_writes_survive_kill_9_sqlite(tmp_path: Path) -> None:
    """SQLite (WAL, synchronous=FULL): committed before answered, so kill -9 loses nothing
    that was acknowledged (https://hl7.org/fhir/R4/http.html#concurrency)."""
    _crash_and_check("sqlite:///tmp.db", tmp_path)


def test_acknowledged_writes_survive_kill_9_postgresql(tmp_path: Path) -> None:
    """PostgreSQL: the same, with the server processes killed (the database keeps running).
    See https://hl7.org/fhir/R4/http.html#concurrency."""
    _crash_and_check(pg_server().new_database(), tmp_path)


# -- two stateless nodes on one PostgreSQL ---------------------------------------------------


def _put(base: str, pid: str, family: str, **headers: str) -> requests.Response:
    return requests.put(f"{base}/Patient/{pid}", headers={**FHIR_JSON, **headers}, timeout=30,
                        json={"resourceType": "Patient", "id": pid, "name": [{"family": family}]})


def test_two_nodes_on_one_postgresql(tmp_path: Path) -> None:
    """Writes through one node are read through the other, and If-Match conflicts and
    conditional creates are decided in the database, not in either process.
    See https://hl7.org/fhir/R4/http.html#concurrency."""
    db = pg_server().new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with serving(db, tmp_path / "a") as a, serving(db, tmp_path / "b") as b:
        r = requests.post(f"{a.base}/Patient", headers=FHIR_JSON, timeout=30,
                          json={"resourceType": "Patient", "name": [{"family": "ViaA"}]})
        assert r.status_code == 201
        pid = r.json()["id"]
        read_b = requests.get(f"{b.base}/Patient/{pid}", headers=FHIR_JSON, timeout=30)
        assert read_b.status_code == 200 and read_b.json()["name"][0]["family"] == "ViaA"
        assert read_b.headers["ETag"] == 'W/"1"'
        # B updates with the version both saw; A's update with the same version is stale
        assert _put(b.base, pid, "ViaB", **{"If-Match": 'W/"1"'}).status_code == 200
        stale = _put(a.base, pid, "ViaA-again", **{"If-Match": 'W/"1"'})
        assert stale.status_code == 412, stale.text
        assert requests.get(f"{a.base}/Patient/{pid}", headers=FHIR_JSON,
                            timeout=30).json()["name"][0]["family"] == "ViaB"

        # racing If-Match updates from both nodes: exactly one wins
        def attempt(i: int) -> int:
            node = (a, b)[i % 2]
            return _put(node.base, pid, f"race{i}", **{"If-Match": 'W/"2"'}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(attempt, range(8)))
        assert codes.count(200) == 1, codes
        assert all(c in (200, 409, 412) for c in codes), codes

        # racing conditional creates from both nodes: exactly one resource
        def create(i: int) -> tuple[int, str]:
            node = (a, b)[i % 2]
            r = requests.post(f"{node.base}/Patient", timeout=30,
                              headers={**FHIR_JSON, "If-None-Exist": f"identifier={SYS}|both"},
                              json={"resourceType": "Patient",
                                    "identifier": [{"system": SYS, "value": "both"}]})
            return r.status_code, str(r.json().get("id"))

        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(create, range(8)))
        assert sorted(c for c, _ in made) == [200] * 7 + [201], made
        assert len({rid for _, rid in made}) == 1, made

        # history and search agree across nodes
        hist: dict[str, Any] = requests.get(f"{b.base}/Patient/{pid}/_history",
                                            headers=FHIR_JSON, timeout=30).json()
        assert hist["total"] == 3
        found = requests.get(f"{a.base}/Patient", params={"identifier": f"{SYS}|both"},
                             headers=FHIR_JSON, timeout=30).json()
        assert len(found["entry"]) == 1


def test_graceful_stop_then_restart_keeps_data(tmp_path: Path) -> None:
    """A plain stop (SIGTERM) and restart: what was written is there.
    See https://hl7.org/fhir/R4/http.html#read."""
    with serving("sqlite:///tmp.db", tmp_path) as node:
        pid = _put(node.base, "keep-me", "Kept").json()["id"]
        node.kill(signal.SIGTERM)
    with serving("sqlite:///tmp.db", tmp_path) as node:
        r = requests.get(f"{node.base}/Patient/{pid}", headers=FHIR_JSON, timeout=30)
        assert r.status_code == 200 and r.json()["name"][0]["family"] == "Kept"
