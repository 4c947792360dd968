"""The real `telefhir serve` supervisor, with real processes and signals: it starts granian (and
its workers), the MLLP listener and the media service, each in a process of its own; kill -9 of
the supervisor leaves none of them alive and frees every port; SIGTERM and SIGINT drain a
request in flight and exit 0 within --grace; a child that dies is replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from hl7.client import MLLPClient

from tests.integration.hl7_support import ack_fields, free_port, sample

TELEFHIR = Path(sys.executable).parent / "telefhir"
RESTART_S = 60.0
"""Time a replaced service gets to answer again: a second or two on an idle machine (0.5 s
backoff plus the app's start), far more when the machine is loaded; not a timing test."""


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every living descendant of `root`: pid -> start time (to tell a reused pid apart)."""
    parent_of: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[1] != "Z":
                parent_of[int(entry.name)] = (st[0], st[2])
    found: dict[int, int] = {}
    frontier = {root}
    while frontier:
        frontier = {p for p, (pp, _) in parent_of.items() if pp in frontier and p not in found}
        found.update({p: parent_of[p][1] for p in frontier})
    return found


def alive(pid: int, started: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z" and st[2] == started


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def granian_workers(granian: int) -> list[int]:
    """granian's worker processes (multiprocessing spawns them; its resource tracker aside)."""
    return [p for p in descendants(granian)
            if (_stat(p) or (0,))[0] == granian and "spawn_main" in cmdline(p)]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def mllp_ack(port: int, control_id: str) -> str:
    with MLLPClient("127.0.0.1", port) as client:
        return ack_fields(client.send_message(sample("ADT01-23.hl7", control_id)))["code"]


class Serve:
    """One `telefhir serve` with the FHIR API, the MLLP listener and the media service, on
    free ports; its output goes to a log file."""

    def __init__(self, db: str, tmp: Path, workers: int = 1, grace: float = 10,
                 extra: tuple[str, ...] = (), mllp: int | None = None) -> None:
        self.http, self.media = free_port(), free_port()
        self.mllp = mllp or free_port()
        self.base = f"http://127.0.0.1:{self.http}/fhir"
        self.log_path = tmp / f"serve-{self.http}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR_")}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(TELEFHIR), "serve", "--no-auth", "--db", db, "--port", str(self.http),
             "--workers", str(workers), "--threads", "2", "--grace", str(grace),
             "--mllp-port", str(self.mllp), "--media-port", str(self.media), *extra],
            cwd=tmp, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> Serve:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"telefhir serve exited: {self.log()[-3000:]}")
            return "media ready" in self.log() and "mllp ready" in self.log()

        wait_for(ready, 90, "telefhir serve ready")
        return self

    def child(self, name: str) -> int | None:
        """The pid of the supervisor's child running service `name` (http, mllp, media)."""
        for pid in descendants(self.proc.pid):
            st = _stat(pid)
            if st and st[0] == self.proc.pid and f'"name": "{name}"' in cmdline(pid):
                return pid
        return None

    def service(self, name: str) -> int:
        pid = self.child(name)
        assert pid is not None, f"no {name} child"
        return pid

    def metadata_ok(self) -> bool:
        try:
            return requests.get(f"{self.base}/metadata", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def media_ok(self) -> bool:
        try:
            r = requests.get(f"http://127.0.0.1:{self.media}/media/health", timeout=5)
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.json() == {"status": "ok"}

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(db: str, **kw: object) -> Serve:
        s = Serve(db, tmp_path, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'telefhir.db'}"


def test_kill_9_of_the_supervisor_leaves_nothing(db_url: str, serve: Callable[..., Serve]
                                                  ) -> None:
    s = serve(db_url, workers=2).wait_ready()
    assert s.metadata_ok() and s.media_ok()
    assert mllp_ack(s.mllp, "K9-1") == "AA"
    procs = descendants(s.proc.pid)
    granian = s.service("http")
    workers = granian_workers(granian)
    assert len(workers) == 2
    assert len(procs) >= 6  # granian, 2 workers, MLLP listener and its processor, media
    # the FHIR workers know where the media service is
    environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
    assert f"TELEFHIR_MEDIA_URL=http://127.0.0.1:{s.media}/media".encode() in environ

    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait(5)
    wait_for(lambda: not any(alive(p, t) for p, t in procs.items()), 2.0,
             f"every process of serve gone: {[cmdline(p)[:80] for p in procs]}")
    for port in (s.http, s.mllp, s.media):
        assert not accepts(port)
        assert bindable(port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_a_request_in_flight(sig: signal.Signals, sqlite_url: str,
                                           serve: Callable[..., Serve]) -> None:
    """A POST _search whose body is still arriving when the signal comes is answered 200;
    serve then exits 0, well within --grace, leaving no process behind."""
    s = serve(sqlite_url, workers=2, grace=20).wait_ready()
    procs = descendants(s.proc.pid)
    body = b"name=nobody&_count=5"
    with socket.create_connection(("127.0.0.1", s.http), timeout=20) as conn:
        conn.sendall(b"POST /fhir/Patient/_search HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Accept: application/fhir+json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(s.proc.pid, sig)
        wait_for(lambda: "stopping (grace 20 s)" in s.log(), 15, "supervisor stopping")
        time.sleep(1.5)
        assert s.proc.poll() is None  # still draining
        conn.sendall(body[5:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b'"resourceType":"Bundle"' in answer or b"Bundle" in answer
    assert s.proc.wait(20) == 0
    assert time.monotonic() - t0 < 20
    assert not any(alive(p, t) for p, t in procs.items())
    assert "telefhir serve: stopped" in s.log()


@pytest.mark.parametrize("when", ["workers starting", "ready"])
def test_ctrl_c_to_the_process_group_stops_in_order(when: str, sqlite_url: str,
                                                   serve: Callable[..., Serve]) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group, here while granian's
    workers are still loading the app, or once serve is ready: the services, each in a group
    of its own, are stopped by the supervisor in order; none is left running or dies of the
    SIGINT halfway."""
    s = serve(sqlite_url, workers=2, grace=20)
    if when == "ready":
        s.wait_ready()
    else:
        wait_for(lambda: "Spawning worker-2" in s.log(), 90, "granian starting its workers")
    procs = descendants(s.proc.pid)
    os.killpg(s.proc.pid, signal.SIGINT)
    assert s.proc.wait(30) == 0, s.log()[-3000:]
    assert "Traceback" not in s.log() and "KeyboardInterrupt" not in s.log()
    assert "killed" not in s.log()
    wait_for(lambda: not any(alive(p, t) for p, t in procs.items()), 2.0, "all gone")


def test_grace_period_ends_with_a_kill(sqlite_url: str, serve: Callable[..., Serve]) -> None:
    """A request that never completes does not hold serve past --grace: it kills what is
    left, exits 1 and says so."""
    s = serve(sqlite_url, grace=1).wait_ready()
    procs = descendants(s.proc.pid)
    with socket.create_connection(("127.0.0.1", s.http), timeout=20) as conn:
        conn.sendall(b"POST /fhir/Patient/_search HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\nname=")
        time.sleep(0.5)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(10) == 1
        assert time.monotonic() - t0 < 10
    wait_for(lambda: not any(alive(p, t) for p, t in procs.items()), 2.0, "all gone")
    assert "still running after the grace period" in s.log()


def test_dead_children_are_replaced(db_url: str, serve: Callable[..., Serve]) -> None:
    s = serve(db_url, workers=1).wait_ready()

    # a granian worker: granian respawns it
    granian = s.service("http")
    (worker,) = granian_workers(granian)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: [p for p in granian_workers(granian) if p != worker] != [], RESTART_S,
             "a new granian worker")
    wait_for(s.metadata_ok, RESTART_S, "FHIR API answers after the worker died")

    # granian's main process: the supervisor restarts it, its worker dies with it
    old = descendants(granian)
    os.kill(granian, signal.SIGKILL)
    wait_for(lambda: not any(alive(p, t) for p, t in old.items()), 2.0, "old worker gone")
    wait_for(lambda: s.child("http") not in (None, granian), RESTART_S,
             "a new granian")
    wait_for(s.metadata_ok, RESTART_S, "FHIR API answers after granian died")

    # the MLLP listener (and its inbox processor): a message gets its AA after the restart
    mllp = s.service("mllp")
    old = {mllp: _stat(mllp)[2], **descendants(mllp)}  # type: ignore[index]
    os.kill(mllp, signal.SIGKILL)
    wait_for(lambda: not any(alive(p, t) for p, t in old.items()), 2.0, "old MLLP gone")
    wait_for(lambda: accepts(s.mllp), RESTART_S, "MLLP port answers again")
    assert mllp_ack(s.mllp, "RESTART-1") == "AA"

    # the media service
    media = s.service("media")
    os.kill(media, signal.SIGKILL)
    wait_for(lambda: s.child("media") not in (None, media) and s.media_ok(),
             RESTART_S, "media service answers again")
    assert "mllp (pid" in s.log() and "was killed by SIGKILL; restarting in" in s.log()


def test_a_service_that_cannot_start_stops_serve(sqlite_url: str, serve: Callable[..., Serve]
                                                  ) -> None:
    """The MLLP port is taken: serve says which service failed, stops the others, exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        s = serve(sqlite_url, mllp=taken.getsockname()[1])
        code = s.proc.wait(90)
    assert code == 1, s.log()
    assert (f"mllp cannot listen on 127.0.0.1:{s.mllp}: Address already in use (choose another "
            "port with --mllp-port, or 0 to turn the service off)") in s.log()
    ours = [p for p in descendants(1) if f'"port": {s.http}' in cmdline(p)]
    assert not ours
    assert not accepts(s.http)


@pytest.mark.parametrize("args, message", [
    (["--grace", "-1"], "--grace must be 0 or more seconds"),
    (["--hl7-config", "/nonexistent/hl7.toml"], "HL7 configuration /nonexistent/hl7.toml"),
    (["--media-udp-ports", "80-90"], "must lie within 1024-65535"),
    (["--media-port", "2575"], "--mllp-port and --media-port are both 2575"),
    (["--mllp-port", "70000"], "--mllp-port 70000 is not a TCP port (1-65535; 0 turns it off)"),
])
def test_bad_options(args: list[str], message: str, sqlite_url: str, tmp_path: Path) -> None:
    r = subprocess.run([str(TELEFHIR), "serve", "--db", sqlite_url, "--port",
                        str(free_port()), *args], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
