"""The supervisor: starts each ChildSpec in its own process, restarts one that dies (with an
exponential backoff, so a crash loop does not spin), and on SIGTERM or SIGINT asks every child
to stop, waits up to the grace period for them to finish what they are doing (in-flight HTTP
requests, MLLP messages being acknowledged, media peers), then kills what is left.

Every child is started with PR_SET_PDEATHSIG (fhir_server.serve.deathsig), so if the
supervisor itself is killed (kill -9 included) the kernel kills its children, and they theirs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import TextIO

from fhir_server.serve.deathsig import die_with_parent
from fhir_server.serve.services import ChildSpec

POLL_S = 0.1


@dataclass
class Backoff:
    """Delay before restarting a child: `base` doubled for each death in a row of a child that
    ran less than `stable_after` seconds, at most `cap`; a child that ran longer starts over."""

    base: float = 0.5
    cap: float = 30.0
    stable_after: float = 10.0
    failures: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.stable_after:
            self.failures = 0
        delay = min(self.cap, self.base * 2 ** self.failures)
        self.failures += 1
        return delay


@dataclass
class Child:
    """A supervised service and its current process."""

    spec: ChildSpec
    backoff: Backoff = field(default_factory=Backoff)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    restart_at: float | None = None


def describe_exit(code: int) -> str:
    """A Popen return code in words."""
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def bind_error(host: str, port: int) -> OSError | None:
    """Why nothing of ours could listen on host:port now (None if it could).

    Checked before the services start: a port another program listens on would otherwise
    pass the readiness probe while our service fails to bind it."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        return exc
    return None


class Supervisor:
    """Runs `specs` until a signal says stop; `run()` returns the exit status."""

    def __init__(self, specs: Sequence[ChildSpec], grace: float, startup_timeout: float = 120.0,
                 out: TextIO = sys.stderr) -> None:
        self.children = [Child(s) for s in specs]
        self.grace = grace
        self.startup_timeout = startup_timeout
        self.out = out
        self.stop_signals = 0

    def say(self, text: str) -> None:
        print(f"telefhir serve: {text}", file=self.out, flush=True)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signals += 1

    def _start(self, child: Child) -> None:
        argv = [sys.executable, "-m", "fhir_server.serve.child", json.dumps(child.spec.as_json())]
        # A process group of its own: a terminal's Ctrl-C reaches the supervisor alone, which
        # stops the services in order (SIGTERM to each) instead of all at once mid-start.
        child.proc = subprocess.Popen(argv, process_group=0,
                                      preexec_fn=partial(die_with_parent, os.getpid()))
        child.started = time.monotonic()
        child.ready = False
        child.restart_at = None

    def _check_ready(self, child: Child) -> None:
        if not child.ready and child.proc is not None and child.proc.poll() is None:
            child.ready = accepts(child.spec.probe_host, child.spec.port)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for child in self.children:
            spec = child.spec
            error = bind_error(spec.host, spec.port)
            if error is not None:
                off = "" if spec.option == "--port" else ", or 0 to turn the service off"
                self.say(f"{spec.name} cannot listen on {spec.host}:{spec.port}: "
                         f"{error.strerror or error} (choose another port with {spec.option}{off})")
                return 1
        for child in self.children:
            self._start(child)
        if not self._wait_started():
            code = self._stop()
            return code if self.stop_signals else 1  # asked to stop while starting: not a failure
        for child in self.children:
            assert child.proc is not None
            self.say(f"{child.spec.name} ready on {child.spec.host}:{child.spec.port} "
                     f"(pid {child.proc.pid})")
        while not self.stop_signals:
            self._watch()
            time.sleep(POLL_S)
        self.say(f"stopping (grace {self.grace:g} s)")
        return self._stop()

    def _wait_started(self) -> bool:
        """Wait for every child to accept connections; False if one exits first or the
        startup timeout passes (a port in use, a bad option: nothing to restart)."""
        deadline = time.monotonic() + self.startup_timeout
        while not self.stop_signals:
            for child in self.children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None:
                    self.say(f"{child.spec.name} {describe_exit(code)} while starting "
                             "(see its messages above); stopping")
                    return False
                self._check_ready(child)
            if all(c.ready for c in self.children):
                return True
            if time.monotonic() > deadline:
                late = ", ".join(c.spec.name for c in self.children if not c.ready)
                self.say(f"{late} not accepting connections after {self.startup_timeout:g} s; "
                         "stopping")
                return False
            time.sleep(POLL_S)
        return False

    def _watch(self) -> None:
        """Restart children that died, once their backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                if not child.ready:
                    self._check_ready(child)
                    if child.ready:
                        self.say(f"{child.spec.name} ready again (pid {child.proc.pid})")
                continue
            delay = child.backoff.next_delay(now - child.started)
            self.say(f"{child.spec.name} (pid {child.proc.pid}) {describe_exit(code)}; "
                     f"restarting in {delay:g} s")
            child.restart_at = now + delay

    def _stop(self) -> int:
        """SIGTERM every child, wait up to the grace period, SIGKILL the rest. 0 if all
        stopped in time; 1 if one had to be killed."""
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        signals_seen = self.stop_signals
        deadline = time.monotonic() + self.grace
        while any(p.poll() is None for p in live):
            if time.monotonic() >= deadline or self.stop_signals > max(signals_seen, 1):
                break  # grace over, or asked again: stop now
            time.sleep(POLL_S)
        killed = [p for p in live if p.poll() is None]
        for proc in killed:
            proc.kill()  # its own children get SIGKILL from their parent-death signal
        for proc in live:
            proc.wait()
        if killed:
            self.say(f"killed {len(killed)} service(s) still running after the grace period")
            return 1
        self.say("stopped")
        return 0
