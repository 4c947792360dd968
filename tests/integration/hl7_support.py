"""A real `telefhir hl7 listen` process for tests, the sample messages, and a look into the
store it writes (through the FHIR dispatcher, as any client sees it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from fhir_server.app import build_context, build_dispatcher, open_store
from fhir_server.config import Config
from fhir_server.request import FhirRequest
from tests.conftest import SHARED_DATA

TELEFHIR = Path(sys.executable).parent / "telefhir"
SAMPLES = SHARED_DATA / "fhir-converter-hl7v2" / "messages"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(name: str, control_id: str | None = None) -> str:
    """A sample message with CR segment ends, no BOM, and (optionally) MSH-10 replaced: the
    samples reuse control ids such as MSG00001, which the gateway rightly treats as repeats."""
    text = (SAMPLES / name).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    text = "\r".join(line for line in text.split("\n") if line.strip()) + "\r"
    if control_id is not None:
        text = set_field(text, "MSH", 10, control_id)
    return text


def original_mode(text: str) -> str:
    """`text` without MSH-15/MSH-16, so that it is acknowledged in original mode (AA/AE/AR)."""
    return set_field(set_field(text, "MSH", 15, ""), "MSH", 16, "")


def set_field(text: str, segment: str, n: int, value: str) -> str:
    """`text` with field n of the first `segment` set (MSH counts its field separator)."""
    lines = text.split("\r")
    for i, line in enumerate(lines):
        if line.startswith(segment + "|"):
            parts = line.split("|")
            idx = n - 1 if segment == "MSH" else n  # MSH-1 is the separator itself
            while len(parts) <= idx:
                parts.append("")
            parts[idx] = value
            lines[i] = "|".join(parts)
            break
    return "\r".join(lines)


class Listener:
    """One `telefhir hl7 listen` process (its own process group)."""

    def __init__(self, db: str, log: Path, config: Path | None = None,
                 port: int | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.log_path = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR_")}
        if config is not None:
            env["TELEFHIR_HL7_CONFIG"] = str(config)
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(TELEFHIR), "hl7", "listen", "--db", db, "--port", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"listener exited: {log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise AssertionError("the listener did not start")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def listening(db: str, tmp: Path, config: Path | None = None) -> Iterator[Listener]:
    node = Listener(db, tmp / "listener.log", config)
    try:
        yield node
    finally:
        node.kill()


class Fhir:
    """Reads (and writes) the store through the dispatcher, as a FHIR client would."""

    def __init__(self, db: str) -> None:
        self.store = open_store(db)
        self.ctx = build_context(Config(db_url=db, auth=False), self.store)
        self.dispatcher = build_dispatcher(self.ctx)

    def close(self) -> None:
        self.store.close()

    def call(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
             body: Any = None) -> tuple[int, Any]:
        raw = orjson.dumps(body) if body is not None else b""
        resp = self.dispatcher.handle(FhirRequest(
            method, path, query or [], {"content-type": "application/fhir+json",
                                        "accept": "application/fhir+json"}, raw,
            "http://test/fhir"))
        if resp.raw is not None:
            return resp.status, orjson.loads(resp.raw)
        if resp.resource is not None:
            return resp.status, orjson.loads(orjson.dumps(resp.resource))
        return resp.status, None

    def search(self, res_type: str, **params: str) -> list[dict[str, Any]]:
        status, body = self.call("GET", res_type, [*params.items(), ("_count", "500")])
        assert status == 200, body
        return [e["resource"] for e in body.get("entry", [])
                if e.get("search", {}).get("mode") == "match"]

    def one(self, res_type: str, **params: str) -> dict[str, Any]:
        found = self.search(res_type, **params)
        assert len(found) == 1, (res_type, params, found)
        return found[0]

    def read(self, ref: str) -> dict[str, Any]:
        status, body = self.call("GET", ref)
        assert status == 200, (ref, body)
        return dict(body)

    def inbox(self) -> dict[str, int]:
        from hl7v2_gateway import inbox

        inbox.ensure(self.store)
        return inbox.counts(self.store)

    def inbox_row(self, control_id: str) -> Any:
        from hl7v2_gateway import inbox

        rows = self.store.query("SELECT id FROM hl7_inbox WHERE control_id = ?", (control_id,))
        assert len(rows) == 1, rows
        return inbox.get(self.store, int(rows[0][0]))

    def wait_processed(self, timeout: float = 60) -> dict[str, int]:
        """Wait until no inbox row is pending; the counts by status."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.inbox()
            if not counts.get("pending"):
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f"inbox still pending: {counts}")
            time.sleep(0.1)


def ack_fields(ack: bytes | str) -> dict[str, str]:
    """MSA-1, MSA-2 and the first ERR's code, read with the `hl7` package."""
    import hl7

    text = ack.decode() if isinstance(ack, bytes) else ack
    text = text.strip("\x0b\x1c\r\n")
    msg = hl7.parse(text)
    out = {"code": str(msg.segment("MSA")[1]), "control": str(msg.segment("MSA")[2]),
           "msh10": str(msg.segment("MSH")[10]), "version": str(msg.segment("MSH")[12])}
    try:
        err = msg.segment("ERR")
    except KeyError:
        return out
    if out["version"] >= "2.5":
        out["err_code"] = str(err[3][0][0]) if len(err) > 3 else ""
        out["err_location"] = str(err[2]) if len(err) > 2 else ""
    else:  # ERR-1 (ELD): segment^sequence^field^code&text&table
        eld = str(err[1]).split("^")
        out["err_code"] = eld[3].split("&")[0] if len(eld) > 3 else ""
        out["err_location"] = "^".join(x for x in eld[:3] if x)
    return out
