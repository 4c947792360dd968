"""A throw-away PostgreSQL server for the test run, started with the machine's pg_ctl.

With CI=true a PostgreSQL that cannot start fails the run instead of skipping tests."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PgServer:
    """One PostgreSQL cluster in a temporary directory, trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="telefhir-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--no-sync"])
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                   "-w", "-t", "60", "start"])
        self.dsn_base = f"postgresql://postgres@127.0.0.1:{self.port}"
        self._n = 0

    def _run(self, cmd: list[str]) -> None:
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(f"{self.dsn_base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"{self.dsn_base}/{name}"

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


_server: PgServer | None = None
_error: str | None = None


def pg_server() -> PgServer:
    """The session's server (started on first use); skips, or fails under CI=true."""
    global _server, _error
    if _server is None and _error is None:
        try:
            _server = PgServer()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            _error = f"{exc} {detail.decode(errors='replace')}"
    if _server is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL could not start and CI=true: {_error}")
        pytest.skip(f"PostgreSQL not available: {_error}")
    return _server


def stop_pg_server() -> None:
    """Stop the session's server if one was started."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None
    time.sleep(0)
