"""Small helpers for integration tests over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.conftest import SHARED_DATA, LiveServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
EXAMPLES = SHARED_DATA / "fhir-r4-examples"
SYNTHEA = SHARED_DATA / "synthea-r4-smart"


def example(name: str) -> dict[str, Any]:
    """An official R4 example resource by file stem, e.g. 'Patient-example'."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def synthea_files() -> list[Path]:
    return sorted(SYNTHEA.glob("*.json"))


def post(srv: LiveServer, path: str, body: Any, **headers: str) -> requests.Response:
    return srv.http.post(srv.url(path), data=json.dumps(body), headers={**FHIR_JSON, **headers})


def put(srv: LiveServer, path: str, body: Any, **headers: str) -> requests.Response:
    return srv.http.put(srv.url(path), data=json.dumps(body), headers={**FHIR_JSON, **headers})


def outcome_text(resp: requests.Response) -> str:
    """All diagnostics and expressions of an OperationOutcome answer, for assertions."""
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " | ".join(
        f"{i.get('code')}:{i.get('diagnostics', '')}:{','.join(i.get('expression', []))}"
        for i in body["issue"]
    )
