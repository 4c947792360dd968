"""`$validate` and the terminology operations with SMART authorization on (the default): each
needs the read scope its registration declares (`{type}.r`, `ValueSet.r`, `CodeSystem.r`),
and an instance outside the caller's compartment is refused like a read
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.integration.smart_support import SmartServer, bearer, token_for

FHIR_JSON = "application/fhir+json"
GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"


def _call(srv: SmartServer, method: str, path: str, tok: dict[str, Any] | None,
          body: Any = None) -> requests.Response:
    headers = {"Content-Type": FHIR_JSON, **(bearer(tok) if tok else {})}
    return requests.request(method, srv.url(path), headers=headers,
                            data=json.dumps(body) if body is not None else None, timeout=30)


def test_validate_needs_the_types_read_scope(world: SmartServer) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert _call(world, "POST", "Observation/$validate", None, obs).status_code == 401
    ann = token_for(world, "launch/patient patient/Observation.rs", "doc", patient="pa")
    r = _call(world, "POST", "Observation/$validate", ann, obs)
    assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "information"
    assert _call(world, "GET", "Observation/oa1/$validate", ann).status_code == 200
    assert _call(world, "GET", "Observation/ob1/$validate", ann).status_code == 403  # Bob's
    assert _call(world, "POST", "Patient/$validate", ann,
                 {"resourceType": "Patient"}).status_code == 403


def test_terminology_operations_need_their_read_scopes(world: SmartServer) -> None:
    obs_only = token_for(world, "user/Observation.rs", "doc")
    terms = token_for(world, "user/ValueSet.rs user/CodeSystem.rs", "doc")
    expand = f"ValueSet/$expand?url={GENDER}"
    lookup = "CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male"
    check = f"ValueSet/$validate-code?url={GENDER}&code=male"
    for path in (expand, lookup, check):
        assert _call(world, "GET", path, obs_only).status_code == 403, path
        assert _call(world, "GET", path, terms).status_code == 200, path
