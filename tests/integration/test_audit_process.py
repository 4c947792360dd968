"""The audit trail of the real `telefhir serve` (granian, 2 worker processes, tokens required):
a burst of bearer-token reads from several threads, `kill -9` of the whole process group right
after the last 2xx, and every answered read has its AuditEvent in the reopened store (group
commit makes each one durable before its answer leaves); and the server's own output holds no
token, password or patient name."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import orjson
import requests
from flask import Flask

from fhir_server.app import create_app, open_store
from fhir_server.config import Config
from fhir_server.dispatcher import Dispatcher
from smart_apps.audit.writer import flush
from smart_apps.passwords import hash_password
from smart_apps.records import AuthRecords
from tests.integration.smart_support import PASSWORD, SmartServer, bearer, token_for
from tests.integration.test_durability import TELEFHIR, _free_port

PATIENTS = 20


def _seed(db_url: str) -> None:
    """Patients p0..p19 (written as an open, in-process server would) and the user doc."""
    app = create_app(Config(db_url=db_url, auth=False))
    client = app.test_client()
    for n in range(PATIENTS):
        r = client.put(f"/fhir/Patient/p{n}", json={
            "resourceType": "Patient", "id": f"p{n}", "name": [{"family": "Quuxley"}]},
            headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.get_data()
    store = app.extensions["telefhir.context"].store
    AuthRecords(store).add_user("doc", hash_password(PASSWORD), "Practitioner/dr1", False)
    store.close()


class Serve:
    """`telefhir serve` (authorization on) in a process group of its own."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        self.port = _free_port()
        self.log = cwd / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(TELEFHIR), "serve", "--port", str(self.port), "--db", db_url,
                 "--workers", "2", "--threads", "4"],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        root = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if requests.get(f"{root}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.1)
        self.root = root

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)


class Readers:
    """Threads reading Patient/p<n> with a bearer token until told to stop; the 200 answers
    per patient."""

    def __init__(self, base: str, token: str, threads: int = 6) -> None:
        self.ok: Counter[str] = Counter()
        self.other: list[int] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(base, token, t), daemon=True)
                         for t in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, base: str, token: str, t: int) -> None:
        http = requests.Session()
        n = t
        while not self.stop.is_set():
            pid = f"p{n % PATIENTS}"
            n += 1
            try:
                r = http.get(f"{base}/Patient/{pid}", headers=bearer(token), timeout=10)
            except requests.RequestException:
                return  # the server was killed
            with self._lock:
                if r.status_code == 200:
                    self.ok[pid] += 1
                else:
                    self.other.append(r.status_code)

    def total(self) -> int:
        with self._lock:
            return sum(self.ok.values())

    def join(self) -> None:
        for t in self._threads:
            t.join(30)


def _audited_reads(db_url: str, client_id: str) -> Counter[str]:
    """Successful read AuditEvents of `client_id` per Patient id, from the reopened store (the
    logged ones moved into it first, as an auditor's search would)."""
    store = open_store(db_url)
    try:
        with store.transaction() as tx:
            flush(tx)
        assert store.query("SELECT count(*) FROM audit_log") == [(0,)]
        rows = store.query("SELECT body FROM resources WHERE res_type = 'AuditEvent'")
    finally:
        store.close()
    out: Counter[str] = Counter()
    for (body,) in rows:
        e: dict[str, Any] = orjson.loads(body if isinstance(body, bytes | str) else
                                         orjson.dumps(body))
        who = e["agent"][0]["who"].get("identifier", {}).get("value")
        if who == client_id and e["subtype"][0]["code"] == "read" and e["outcome"] == "0":
            out[e["entity"][0]["what"]["reference"].split("/")[1]] += 1
    return out


def test_kill_9_after_audited_reads_loses_no_audit_event(db_url: str, tmp_path: Path) -> None:
    _seed(db_url)
    node = Serve(db_url, tmp_path)
    try:
        base = f"{node.root}/fhir"
        srv = SmartServer(base, node.root, cast(Flask, None), AuthRecords(open_store(db_url)),
                          cast(Dispatcher, None))
        tok = token_for(srv, "user/Patient.rs")
        srv.records.store.close()
        assert requests.get(f"{base}/Patient?name=Quuxley", headers=bearer(tok)).status_code \
            == 200
        readers = Readers(base, tok["access_token"])
        deadline = time.monotonic() + 60
        while readers.total() < 400 and time.monotonic() < deadline and not readers.other:
            time.sleep(0.005)
        node.kill()  # while the readers are still sending: the last 2xx was just answered
    finally:
        node.kill()
    readers.stop.set()
    readers.join()
    assert not readers.other, readers.other[:10]
    assert readers.total() >= 400
    audited = _audited_reads(db_url, tok["client_id"])
    missing = {pid: n - audited[pid] for pid, n in readers.ok.items() if audited[pid] < n}
    assert not missing, (missing, readers.ok, audited)

    # the server's output: no token, password or patient name
    output = node.log.read_text()
    assert "telefhir serving" in output
    for secret in (tok["access_token"], PASSWORD, "Quuxley"):
        assert secret not in output, secret
