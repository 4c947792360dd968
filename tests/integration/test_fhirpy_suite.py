"""fhirpy's own live-server suites (sync and async, 188 tests, written for Aidbox) against a
real `telefhir serve` with authorization on, on both backends: the suite's client holds a
SMART Backend Services token (system/*.cruds) that the test gets as any backend app does
(registered with `telefhir apps register --backend`, an RS384 assertion signed with PyJWT).
The suite runs unchanged from ../shared/data/peer-suites/fhirpy in its own pinned venv
(`.peer-venvs/fhirpy`, made by `make test` from tests/peer/fhirpy-requirements.txt). Exactly
the tests listed below fail, each for the reason given; the README's Compatibility section
lists the same tests, so a new failure, or an exception that starts to pass, fails this test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import SHARED_DATA
from tests.integration.test_durability import TELEFHIR, Node, serving
from tests.pg import pg_server

ROOT = Path(__file__).resolve().parents[2]
SUITE = SHARED_DATA / "peer-suites" / "fhirpy"
PEER_PYTHON = ROOT / ".peer-venvs" / "fhirpy" / "bin" / "python"
TOTAL = 188

_ID = "ids with underscores"
_TYPE = "Bundle entries without resourceType"
_POST_ID = "a POST that keeps the client's id"
_DELETE = "a 200 answer to delete"

# test name -> why it fails; each runs in the sync and the async suite
EXPECTED_FAILURES: dict[str, tuple[str, ...]] = {
    "test_get_first": (_ID,),
    "test_save_fields": (_ID,),
    "test_update": (_ID,),
    "test_patch": (_ID,),
    "test_create_bundle": (_TYPE, _ID, _POST_ID),
    "test_fetch_all": (_TYPE, _POST_ID),
    "test_for_iterator": (_TYPE, _POST_ID),  # test_async_for_iterator in the async suite
    "test_types_fetch_all": (_TYPE, _POST_ID),
    "test_typed_fetch": (_TYPE,),
    "test_typed_get": (_TYPE,),
    "test_typed_first": (_TYPE,),
    "test_typed_get_or_create": (_TYPE,),
    "test_typed_update": (_TYPE,),
    "test_typed_patch": (_TYPE,),
    "test_conditional_delete__one_match": (_DELETE,),
}


def _expected() -> set[str]:
    out = set()
    for name in EXPECTED_FAILURES:
        out.add(f"sync::{name}")
        async_name = "test_async_for_iterator" if name == "test_for_iterator" else name
        out.add(f"async::{async_name}")
    return out


def _need(path: Path, what: str) -> None:
    if path.exists():
        return
    message = f"{what} is missing ({path}); `make test` creates it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _results(junit: Path) -> tuple[set[str], set[str], dict[str, str]]:
    """(all test ids, failed test ids, failure text by id) from pytest's JUnit XML."""
    every, failed, why = set(), set(), {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        suite = "async" if "async" in case.get("classname", "") else "sync"
        tid = f"{suite}::{case.get('name')}"
        every.add(tid)
        for tag in ("failure", "error"):
            bad = case.find(tag)
            if bad is not None:
                failed.add(tid)
                why[tid] = (bad.get("message") or "")[:300]
    return every, failed, why


def _backend_token(node: Node, db: str, tmp_path: Path) -> str:
    """A system/*.cruds access token of a backend app registered for the suite
    (https://hl7.org/fhir/smart-app-launch/backend-services.html)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="fhirpy-suite", alg="RS384", use="sig")
    jwks = tmp_path / "fhirpy-jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEFHIR")}
    registered = subprocess.run(
        [str(TELEFHIR), "apps", "register", "--name", "fhirpy suite", "--backend",
         "--jwks-file", str(jwks), "--scopes", "system/*.cruds", "--db", db],
        env=env, capture_output=True, text=True, timeout=60, check=True)
    client_id = json.loads(registered.stdout)["client_id"]
    token_url = requests.get(f"{node.base}/.well-known/smart-configuration",
                             timeout=10).json()["token_endpoint"]
    assertion = jwt.encode(
        {"iss": client_id, "sub": client_id, "aud": token_url,
         "exp": int(time.time()) + 240, "jti": str(uuid.uuid4())},
        key, algorithm="RS384", headers={"kid": "fhirpy-suite"})
    resp = requests.post(token_url, timeout=10, data={
        "grant_type": "client_credentials", "scope": "system/*.cruds",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fhirpy_live_server_suites(tmp_path: Path, backend: str) -> None:
    """The 188 tests of fhirpy 2.2.0's test_lib_sync.py and test_lib_async.py: all pass but
    the listed exceptions."""
    _need(PEER_PYTHON, "The fhirpy suite's venv")
    _need(SUITE / "tests" / "test_lib_sync.py", "fhirpy's suite")
    db = f"sqlite:///{tmp_path / 'fhirpy.db'}" if backend == "sqlite" else (
        pg_server().new_database())
    junit = tmp_path / "junit.xml"
    with serving(db, tmp_path, auth=True) as node:
        token = _backend_token(node, db, tmp_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TELEFHIR"))}
        env.update(PYTHONDONTWRITEBYTECODE="1", FHIR_SERVER_URL=node.base,
                   FHIR_SERVER_AUTHORIZATION=f"Bearer {token}")
        run = subprocess.run(
            [str(PEER_PYTHON), "-m", "pytest", "tests/test_lib_sync.py",
             "tests/test_lib_async.py", "-p", "no:cacheprovider", "-q", "-o",
             "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
             "-W", "ignore::DeprecationWarning", f"--junitxml={junit}"],
            cwd=SUITE, env=env, capture_output=True, text=True, timeout=900, check=False,
        )
    assert junit.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    every, failed, why = _results(junit)
    assert len(every) == TOTAL, (len(every), run.stdout[-2000:])
    expected = _expected()
    new_failures = {t: why.get(t, "") for t in sorted(failed - expected)}
    now_passing = sorted(expected - failed)
    assert not new_failures and not now_passing, (
        f"new failures: {new_failures}; expected to fail but passed: {now_passing}")
    assert len(every) - len(failed) == TOTAL - len(expected)


def test_readme_lists_the_exceptions() -> None:
    """The README's Compatibility section names exactly the tests expected to fail."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Compatibility\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    assert named == set(EXPECTED_FAILURES) | {"test_async_for_iterator"}
    assert f"{TOTAL - len(_expected())} of {TOTAL}" in section
