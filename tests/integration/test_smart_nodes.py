"""Two server processes on one database share apps, tokens and signing keys; `telefhir serve`
requires tokens unless `--no-auth`, which warns."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from fhir_server.app import create_app
from fhir_server.config import Config
from fhir_server.store.base import ResourceStore
from tests.integration.smart_support import bearer, serve, smart_server_for, token_for

TELEFHIR = Path(sys.executable).parent / "telefhir"


def test_two_nodes_share_keys_and_tokens(store: ResourceStore, db_url: str) -> None:
    from fhir_server.app import open_store

    other_store = open_store(db_url)  # a second node: its own connections
    try:
        a = create_app(Config(db_url=db_url, auth=True), store=store)
        b = create_app(Config(db_url=db_url, auth=True), store=other_store)
        for base_a, root_a in serve(a):
            for base_b, _root_b in serve(b):
                node_a = smart_server_for(a, base_a, root_a)
                node_a.seed({"resourceType": "Patient", "id": "p1"})
                node_a.add_user("doc", "Practitioner/d1")
                tok = token_for(node_a, "openid fhirUser user/Patient.rs offline_access")
                keys_a = requests.get(f"{root_a}/auth/jwks.json").json()
                keys_b = requests.get(base_b.replace("/fhir", "/auth/jwks.json")).json()
                assert keys_a == keys_b
                kid = jwt.get_unverified_header(tok["id_token"])["kid"]
                assert kid in {k["kid"] for k in keys_b["keys"]}
                assert requests.get(f"{base_b}/Patient/p1", headers=bearer(tok)
                                    ).status_code == 200
                # refresh at node B, the old refresh token is spent at node A too
                r = requests.post(base_b.replace("/fhir", "/auth/token"), data={
                    "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                    "client_id": tok["client_id"]})
                assert r.status_code == 200
                again = requests.post(f"{root_a}/auth/token", data={
                    "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                    "client_id": tok["client_id"]})
                assert again.status_code == 400
                assert requests.get(f"{base_a}/Patient/p1", headers=bearer(r.json())
                                    ).status_code == 401  # the family was revoked
    finally:
        other_store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("no_auth", [False, True])
def test_serve_requires_tokens_unless_no_auth(tmp_path: Path, no_auth: bool) -> None:
    port = _free_port()
    cmd = [str(TELEFHIR), "serve", "--port", str(port), "--workers", "1", "--mllp-port", "0",
           "--media-port", "0", "--db", f"sqlite:///{tmp_path / 'serve.db'}",
           *(["--no-auth"] if no_auth else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        r = requests.get(f"{base}/Patient")
        assert r.status_code == (200 if no_auth else 401)
        assert requests.get(f"{base}/.well-known/smart-configuration").status_code == 200
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert ("WARNING: --no-auth" in err) == no_auth
