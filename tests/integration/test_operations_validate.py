"""`$validate` over HTTP (https://hl7.org/fhir/R4/resource-operation-validate.html) on both
backends: resource or Parameters bodies, modes, profiles (core and the published vital-signs
profiles), stored instances, and the error paths; nothing is ever stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.integration.helpers import example

H = {"Content-Type": "application/fhir+json"}
VS = "http://hl7.org/fhir/StructureDefinition/"


def _params(resource: dict[str, Any] | None = None, **prims: str) -> str:
    ps: list[dict[str, Any]] = [{"name": "resource", "resource": resource}] if resource else []
    ps += [{"name": k, ("valueUri" if k == "profile" else "valueCode"): v}
           for k, v in prims.items()]
    return json.dumps({"resourceType": "Parameters", "parameter": ps})


def _outcome(resp: Any) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.json
    assert resp.json["resourceType"] == "OperationOutcome"
    issues: list[dict[str, Any]] = resp.json["issue"]
    return issues


def _errors(resp: Any) -> list[dict[str, Any]]:
    return [i for i in _outcome(resp) if i["severity"] in ("error", "fatal")]


def _count(client: FlaskClient, rtype: str) -> int:
    return int(client.get(f"/fhir/{rtype}?_summary=count").json["total"])


def test_valid_resource_says_no_issues_and_is_not_stored(client: FlaskClient) -> None:
    r = client.post("/fhir/Patient/$validate", headers=H,
                    data=json.dumps({"resourceType": "Patient", "gender": "female"}))
    [issue] = _outcome(r)
    assert issue["severity"] == "information" and "no issues" in issue["diagnostics"].lower()
    assert _count(client, "Patient") == 0


def test_structure_errors_are_issues_with_locations(client: FlaskClient) -> None:
    bad = {"resourceType": "Patient", "gender": True, "custom_prop": "1",
           "birthDate": "not-a-date"}
    errors = _errors(client.post("/fhir/Patient/$validate", headers=H, data=json.dumps(bad)))
    where = {e["expression"][0] for e in errors}
    assert {"Patient.gender", "Patient.custom_prop", "Patient.birthDate"} <= where
    # the same in a Parameters body
    errors2 = _errors(client.post("/fhir/Patient/$validate", headers=H, data=_params(bad)))
    assert {e["expression"][0] for e in errors2} == where
    # a code outside the required binding
    errors3 = _errors(client.post("/fhir/Patient/$validate", headers=H, data=json.dumps(
        {"resourceType": "Patient", "gender": "feminine"})))
    assert errors3 and errors3[0]["expression"] == ["Patient.gender"]


def test_core_invariants_are_checked(client: FlaskClient) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueString": "a", "dataAbsentReason": {"text": "unknown"}}
    errors = _errors(client.post("/fhir/Observation/$validate", headers=H, data=json.dumps(obs)))
    assert any("obs-6" in e["diagnostics"] for e in errors)


def test_type_mismatch_is_an_error_issue(client: FlaskClient) -> None:
    errors = _errors(client.post("/fhir/Observation/$validate", headers=H,
                                 data=json.dumps({"resourceType": "Patient"})))
    assert errors[0]["expression"] == ["resourceType"]


def test_vital_signs_profiles(client: FlaskClient) -> None:
    bp = example("Observation-blood-pressure")
    for profile in ("vitalsigns", "bp"):
        ok = client.post(f"/fhir/Observation/$validate?profile={VS}{profile}", headers=H,
                         data=json.dumps(bp))
        assert not _errors(ok), ok.json
    hr = example("Observation-heart-rate")
    assert not _errors(client.post("/fhir/Observation/$validate", headers=H,
                                   data=_params(hr, profile=VS + "heartrate")))
    wrong = _errors(client.post("/fhir/Observation/$validate", headers=H,
                                data=_params(hr, profile=VS + "bp")))
    text = " ".join(e["diagnostics"] for e in wrong)
    assert "SystolicBP" in text and "BPCode" in text
    no_loinc = copy.deepcopy(hr)
    no_loinc["code"]["coding"] = [c for c in hr["code"]["coding"]
                                  if c["system"] != "http://loinc.org"]
    errors = _errors(client.post("/fhir/Observation/$validate", headers=H,
                                 data=_params(no_loinc, profile=VS + "heartrate")))
    assert errors and errors[0]["expression"] == ["Observation.code.coding"]
    # meta.profile claims are checked too
    claimed = copy.deepcopy(no_loinc)
    claimed["meta"] = {"profile": [VS + "heartrate"]}
    assert _errors(client.post("/fhir/Observation/$validate", headers=H,
                               data=json.dumps(claimed)))


def test_unknown_profile_is_an_error_naming_it(client: FlaskClient) -> None:
    url = "http://example.org/StructureDefinition/nope"
    errors = _errors(client.post(f"/fhir/Patient/$validate?profile={url}", headers=H,
                                 data=json.dumps({"resourceType": "Patient"})))
    assert len(errors) == 1 and url in errors[0]["diagnostics"]
    claimed = {"resourceType": "Patient", "meta": {"profile": [url]}}
    issues = _outcome(client.post("/fhir/Patient/$validate", headers=H, data=json.dumps(claimed)))
    assert [i["severity"] for i in issues] == ["warning"] and url in issues[0]["diagnostics"]


def test_instance_level_and_modes(client: FlaskClient) -> None:
    pid = client.post("/fhir/Patient", headers=H, data=json.dumps(
        {"resourceType": "Patient", "gender": "male"})).json["id"]
    assert not _errors(client.get(f"/fhir/Patient/{pid}/$validate"))
    assert not _errors(client.get(f"/fhir/Patient/{pid}/$validate?mode=update"))
    assert client.get("/fhir/Patient/nobody/$validate").status_code == 404
    # update: the id must be there and match
    upd = _errors(client.post(f"/fhir/Patient/{pid}/$validate", headers=H, data=_params(
        {"resourceType": "Patient", "id": "other"}, mode="update")))
    assert "does not match" in upd[0]["diagnostics"]
    upd2 = _errors(client.post("/fhir/Patient/$validate", headers=H, data=_params(
        {"resourceType": "Patient"}, mode="update")))
    assert upd2[0]["expression"] == ["Patient.id"]
    assert not _errors(client.post("/fhir/Patient/$validate", headers=H, data=_params(
        {"resourceType": "Patient", "id": "x"}, mode="create")))
    # delete: the resource must exist
    assert not _errors(client.post(f"/fhir/Patient/{pid}/$validate?mode=delete"))
    gone = _errors(client.post("/fhir/Patient/nobody/$validate?mode=delete"))
    assert gone[0]["code"] == "not-found"
    for _ in range(2):
        client.post("/fhir/Observation", headers=H, data=json.dumps({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"}}))
    [warning] = _outcome(client.post(f"/fhir/Patient/{pid}/$validate?mode=delete"))
    assert warning["severity"] == "warning" and "2 resource(s)" in warning["diagnostics"]
    assert warning["diagnostics"].count("Observation/") == 2
    assert _count(client, "Patient") == 1
    assert client.get(f"/fhir/Patient/{pid}").json["meta"]["versionId"] == "1"


@pytest.mark.parametrize("path,body,status", [
    ("/fhir/Patient/$validate", None, 400),  # no resource
    ("/fhir/Patient/$validate", _params(), 400),
    ("/fhir/Patient/$validate?mode=destroy", json.dumps({"resourceType": "Patient"}), 400),
    ("/fhir/Patient/$validate?mode=delete", json.dumps({"resourceType": "Patient"}), 400),
    ("/fhir/Patient/$validate", json.dumps({"resourceType": "Nonsense"}), 400),
    ("/fhir/Patient/$validate", "{not json", 400),
    ("/fhir/Patient/$validate?bogus=1", json.dumps({"resourceType": "Patient"}), 400),
])
def test_unusable_invocations_are_400(client: FlaskClient, path: str, body: str | None,
                                      status: int) -> None:
    r = client.post(path, headers=H, data=body or "")
    assert r.status_code == status, r.json
    assert r.json["resourceType"] == "OperationOutcome"
    assert r.json["issue"][0]["severity"] == "error"
