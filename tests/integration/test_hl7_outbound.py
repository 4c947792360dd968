"""Outbound: Appointment booked/changed/cancelled and Encounter started/finished become SIU and
ADT messages, queued in the same transaction as the write and delivered over MLLP by the
`telefhir hl7 listen` process to a downstream listener (written here with the `hl7`
package's parser and its create_ack), which ACKs them; retries while it is down."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
from flask.testing import FlaskClient

from fhir_server.app import create_app
from fhir_server.config import Config
from tests.integration.hl7_support import TELEFHIR, Fhir, free_port, listening

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


class Downstream:
    """A minimal MLLP receiver: records each message and answers with hl7's create_ack."""

    def __init__(self, port: int, code: str = "AA") -> None:
        self.port = port
        self.code = code
        self.messages: list[hl7.Message] = []
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                buf = b""
                while b"\x1c\r" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                if b"\x1c\r" not in buf:
                    continue
                text = buf.split(b"\x0b", 1)[1].split(b"\x1c\r", 1)[0].decode()
                msg = hl7.parse(text)
                self.messages.append(msg)
                ack = str(msg.create_ack(ack_code=self.code))
                conn.sendall(b"\x0b" + ack.encode() + b"\x1c\r")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def wait(self, n: int, timeout: float = 30) -> list[hl7.Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= n, [str(m.segment("MSH")[9]) for m in self.messages]
        return self.messages


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / "hl7.toml"
    path.write_text(f"""application = "TELEFHIR"
facility = "CLINIC"
outbound_backoff = 0.2

[[outbound]]
name = "ris"
host = "127.0.0.1"
port = {port}
receiving_application = "RIS"
receiving_facility = "GHH"
""")
    monkeypatch.setenv("TELEFHIR_HL7_CONFIG", str(path))
    return path, port


@pytest.fixture
def api(config: tuple[Path, int], db_url: str) -> Iterator[FlaskClient]:
    app = create_app(Config(db_url=db_url, auth=False))
    yield app.test_client()
    app.extensions["telefhir.context"].store.close()


def post(client: FlaskClient, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    resp = client.post(f"/fhir/{path}", headers=FHIR, data=json.dumps(body))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return dict(resp.get_json())


def put(client: FlaskClient, body: dict) -> dict:  # type: ignore[type-arg]
    resp = client.put(f"/fhir/{body['resourceType']}/{body['id']}", headers=FHIR,
                      data=json.dumps(body))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return dict(resp.get_json())


def outbox(db_url: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run([str(TELEFHIR), "hl7", "outbox", "--db", db_url, "--all", "--json"],
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_appointments_and_encounters_go_downstream(api: FlaskClient, db_url: str,
                                                   config: tuple[Path, int],
                                                   tmp_path: Path) -> None:
    path, port = config
    pat = post(api, "Patient", {"resourceType": "Patient", "identifier": [
        {"system": "urn:oid:1.2.3", "value": "MRN-7"}], "name": [{"family": "Rivera",
                                                                   "given": ["Ana"]}],
        "gender": "female", "birthDate": "1980-02-03"})
    appt = post(api, "Appointment", {
        "resourceType": "Appointment", "status": "booked",
        "start": "2025-01-10T09:00:00+01:00", "end": "2025-01-10T09:30:00+01:00",
        "participant": [{"actor": {"reference": f"Patient/{pat['id']}"}, "status": "accepted"}]})
    appt["start"], appt["end"] = "2025-01-11T09:00:00+01:00", "2025-01-11T09:30:00+01:00"
    appt = put(api, appt)
    appt["status"] = "cancelled"
    put(api, appt)
    enc = post(api, "Encounter", {"resourceType": "Encounter", "status": "in-progress",
                                  "class": {"system": "http://terminology.hl7.org/CodeSystem/"
                                            "v3-ActCode", "code": "AMB"},
                                  "subject": {"reference": f"Patient/{pat['id']}"},
                                  "period": {"start": "2025-01-10T09:05:00+01:00"}})
    enc["status"] = "finished"
    enc["period"]["end"] = "2025-01-10T09:40:00+01:00"
    put(api, enc)
    # queued with the writes, nothing sent yet: the downstream system is down
    queued = outbox(db_url)
    assert [q["event"] for q in queued] == ["SIU^S12", "SIU^S13", "SIU^S15", "ADT^A04",
                                            "ADT^A03"]
    assert all(q["status"] == "pending" for q in queued)
    with listening(db_url, tmp_path, path):
        deadline = time.monotonic() + 20
        while not any(q["lastError"] for q in outbox(db_url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        first = outbox(db_url)[0]
        assert first["status"] == "pending" and first["attempts"] >= 1
        assert "Connection refused" in first["lastError"] or "refused" in first["lastError"]
        downstream = Downstream(port)
        try:
            got = downstream.wait(5)
        finally:
            downstream.close()
        deadline = time.monotonic() + 20
        while any(q["status"] != "sent" for q in outbox(db_url)) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
    assert [str(m.segment("MSH")[9]) for m in got] == [
        "SIU^S12^SIU_S12", "SIU^S13^SIU_S12", "SIU^S15^SIU_S12", "ADT^A04^ADT_A01",
        "ADT^A03^ADT_A03"]
    s12 = got[0]
    assert str(s12.segment("MSH")[3]) == "TELEFHIR" and str(s12.segment("MSH")[5]) == "RIS"
    assert str(s12.segment("SCH")[25]) == "Booked"
    assert str(s12.segment("TQ1")[7]) == "20250110090000+0100"
    assert str(got[1].segment("TQ1")[7]) == "20250111090000+0100"
    assert str(got[2].segment("SCH")[25]) == "Cancelled"
    pid = s12.segment("PID")
    assert str(pid[3][0][0]) == "MRN-7" and str(pid[5][0][0]) == "Rivera"
    assert str(pid[7]) == "19800203" and str(pid[8]) == "F"
    a03 = got[4]
    assert str(a03.segment("PV1")[45]) == "20250110094000+0100"
    assert all(q["status"] == "sent" and q["ackCode"] == "AA" for q in outbox(db_url))


def test_rejected_outbound_message_fails_with_the_reason(api: FlaskClient, db_url: str,
                                                         config: tuple[Path, int],
                                                         tmp_path: Path) -> None:
    path, port = config
    downstream = Downstream(port, code="AE")
    try:
        post(api, "Appointment", {"resourceType": "Appointment", "status": "booked",
                                  "start": "2025-01-10T09:00:00Z", "end": "2025-01-10T09:30:00Z",
                                  "participant": [{"actor": {"display": "Room 1"},
                                                   "status": "accepted"}]})
        with listening(db_url, tmp_path, path):
            downstream.wait(1)
            deadline = time.monotonic() + 20
            while outbox(db_url)[0]["status"] == "pending" and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        downstream.close()
    row = outbox(db_url)[0]
    assert row["status"] == "failed" and row["ackCode"] == "AE"


def test_messages_from_v2_are_not_echoed(db_url: str, config: tuple[Path, int],
                                         tmp_path: Path) -> None:
    from tests.integration.hl7_support import sample

    fhir = Fhir(db_url)
    fhir.ctx.hooks  # noqa: B018 - the plugin installed the outbox hook for this context
    from hl7v2_gateway.gateway import Gateway
    from hl7v2_gateway.settings import load_settings

    gw = Gateway(fhir.ctx, load_settings())
    _, status = gw.ingest(sample("SIU-S12-01.hl7").encode())
    assert status == "done"
    assert outbox(db_url) == []
    fhir.close()
