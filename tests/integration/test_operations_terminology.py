"""`ValueSet/$expand`, `CodeSystem/$lookup` and `ValueSet/$validate-code` over HTTP
(https://hl7.org/fhir/R4/terminology-service.html) on both backends, over the R4 value sets and
code systems the server ships and over CodeSystem/ValueSet resources stored in it; GET with query
parameters and POST with Parameters, and the error paths."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

H = {"Content-Type": "application/fhir+json"}
GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
ISSUE_CS = "http://hl7.org/fhir/issue-type"
SNOMED_VS = "http://hl7.org/fhir/ValueSet/clinical-findings"

COLOURS_CS = {
    "resourceType": "CodeSystem", "url": "urn:example:colours", "version": "2", "name": "Colours",
    "status": "active", "content": "complete",
    "concept": [
        {"code": "warm", "display": "Warm colours", "concept": [
            {"code": "red", "display": "Red", "definition": "Like blood",
             "designation": [{"language": "fr", "value": "Rouge"}]},
            {"code": "orange", "display": "Orange"}]},
        {"code": "blue", "display": "Blue",
         "property": [{"code": "status", "valueCode": "retired"}]},
    ],
}
WARM_VS = {
    "resourceType": "ValueSet", "url": "urn:example:warm", "status": "active",
    "compose": {"include": [{"system": "urn:example:colours",
                             "filter": [{"property": "concept", "op": "is-a", "value": "warm"}]}]},
}
MIXED_VS = {
    "resourceType": "ValueSet", "url": "urn:example:mixed", "status": "active",
    "compose": {
        "include": [{"valueSet": ["urn:example:warm"]}, {"valueSet": [GENDER]},
                    {"system": "http://loinc.org", "concept": [
                        {"code": "8867-4", "display": "Heart rate"}]}],
        "exclude": [{"system": "urn:example:colours", "concept": [{"code": "warm"}]}],
    },
}


def _p(*entries: tuple[str, str, Any]) -> str:
    return json.dumps({"resourceType": "Parameters", "parameter": [
        {"name": n, k: v} for n, k, v in entries]})


def _post(client: FlaskClient, rtype: str, body: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{rtype}", headers=H, data=json.dumps(body))
    assert r.status_code == 201, r.json
    return str(r.json["id"])


@pytest.fixture
def stored(client: FlaskClient) -> dict[str, str]:
    return {"cs": _post(client, "CodeSystem", COLOURS_CS),
            "warm": _post(client, "ValueSet", WARM_VS),
            "mixed": _post(client, "ValueSet", MIXED_VS)}


def _codes(vs: dict[str, Any]) -> list[str]:
    return [c["code"] for c in vs["expansion"].get("contains", [])]


def _err(resp: Any, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.json)
    assert resp.json["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in resp.json["issue"])


def _out(resp: Any) -> dict[str, list[Any]]:
    assert resp.status_code == 200, resp.json
    out: dict[str, list[Any]] = {}
    for p in resp.json["parameter"]:
        value = p.get("part") or next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return out


# --- $expand -------------------------------------------------------------------------------

def test_expand_core_value_set_with_filter_and_paging(client: FlaskClient) -> None:
    r = client.get(f"/fhir/ValueSet/$expand?url={GENDER}")
    assert r.status_code == 200 and r.json["resourceType"] == "ValueSet"
    assert r.json["url"] == GENDER and r.json["expansion"]["total"] == 4
    assert _codes(r.json) == ["male", "female", "other", "unknown"]
    assert r.json["expansion"]["contains"][1] == {
        "system": GENDER_CS, "version": "4.0.1", "code": "female", "display": "Female"}
    f = client.get(f"/fhir/ValueSet/$expand?url={GENDER}&filter=FEM").json
    assert _codes(f) == ["female"] and f["expansion"]["total"] == 1
    assert {"name": "filter", "valueString": "FEM"} in f["expansion"]["parameter"]
    page = client.get(f"/fhir/ValueSet/$expand?url={GENDER}&count=2&offset=1").json
    assert _codes(page) == ["female", "other"] and page["expansion"]["total"] == 4
    assert page["expansion"]["offset"] == 1
    assert {"name": "count", "valueInteger": 2} in page["expansion"]["parameter"]
    post = client.post("/fhir/ValueSet/$expand", headers=H, data=_p(
        ("url", "valueUri", GENDER), ("filter", "valueString", "un"))).json
    assert _codes(post) == ["unknown"]
    nested = client.get("/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/issue-type"
                        "&filter=structur").json
    assert _codes(nested) == ["structure"]  # a nested concept of 'invalid'


def test_expand_stored_value_sets_by_url_instance_and_inline(
        client: FlaskClient, stored: dict[str, str]) -> None:
    warm = client.get("/fhir/ValueSet/$expand?url=urn:example:warm").json
    assert _codes(warm) == ["warm", "red", "orange"]
    assert warm["expansion"]["contains"][1]["version"] == "2"
    inst = client.get(f"/fhir/ValueSet/{stored['mixed']}/$expand").json
    assert _codes(inst) == ["red", "orange", "male", "female", "other", "unknown", "8867-4"]
    assert inst["id"] == stored["mixed"]
    inline = {**WARM_VS, "url": "urn:example:inline"}
    inline["compose"] = {"include": [{"system": "urn:example:colours"}]}
    r = client.post("/fhir/ValueSet/$expand", headers=H, data=_p(
        ("valueSet", "resource", inline), ("activeOnly", "valueBoolean", True),
        ("includeDesignations", "valueBoolean", True)))
    assert _codes(r.json) == ["warm", "red", "orange"]  # blue is retired
    assert r.json["expansion"]["contains"][1]["designation"] == [{"language": "fr",
                                                                  "value": "Rouge"}]


@pytest.mark.parametrize("query,status,says", [
    ("", 400, "exactly one of 'url' and 'valueSet'"),
    ("?url=urn:nope", 404, "urn:nope"),
    (f"?url={SNOMED_VS}", 422, "snomed"),
    (f"?url={GENDER}&count=-1", 400, "negative"),
    (f"?url={GENDER}&count=many", 400, "integer"),
    (f"?url={GENDER}&valueSetVersion=9.9", 404, "9.9"),
    (f"?url={GENDER}&nonsense=1", 400, "nonsense"),
])
def test_expand_errors(client: FlaskClient, query: str, status: int, says: str) -> None:
    assert says.lower() in _err(client.get(f"/fhir/ValueSet/$expand{query}"), status).lower()


def test_expand_errors_on_stored_and_inline(client: FlaskClient, stored: dict[str, str]) -> None:
    assert client.get("/fhir/ValueSet/nobody/$expand").status_code == 404
    _err(client.get(f"/fhir/ValueSet/{stored['warm']}/$expand?url={GENDER}"), 400)
    snomed = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [
        {"system": "http://snomed.info/sct",
         "filter": [{"property": "concept", "op": "is-a", "value": "73211009"}]}]}}
    vid = _post(client, "ValueSet", snomed)
    assert "snomed" in _err(client.get(f"/fhir/ValueSet/{vid}/$expand"), 422).lower()
    loop = {"resourceType": "ValueSet", "url": "urn:example:loop", "status": "active",
            "compose": {"include": [{"valueSet": ["urn:example:loop"]}]}}
    _post(client, "ValueSet", loop)
    assert "itself" in _err(client.get("/fhir/ValueSet/$expand?url=urn:example:loop"), 422)
    both = _p(("url", "valueUri", GENDER), ("valueSet", "resource", WARM_VS))
    _err(client.post("/fhir/ValueSet/$expand", headers=H, data=both), 400)


# --- $lookup -------------------------------------------------------------------------------

def test_lookup_core_code_with_hierarchy(client: FlaskClient) -> None:
    out = _out(client.get(f"/fhir/CodeSystem/$lookup?system={ISSUE_CS}&code=invalid"))
    assert out["display"] == ["Invalid Content"] and out["version"] == ["4.0.1"]
    assert out["name"] == ["IssueType"]
    props = [{q["name"]: next(v for k, v in q.items() if k.startswith("value"))
              for q in part} for part in out["property"]]
    assert {"code": "child", "value": "structure"} in props
    assert {"code": "definition",
            "value": "Content invalid against the specification or a profile."} in props
    sub = _out(client.get(f"/fhir/CodeSystem/$lookup?system={ISSUE_CS}&code=structure"
                          "&property=parent"))
    assert [[q["valueCode"] for q in part if q["name"] == "value"]
            for part in sub["property"]] == [["invalid"]]
    coding = client.post("/fhir/CodeSystem/$lookup", headers=H, data=_p(
        ("coding", "valueCoding", {"system": GENDER_CS, "code": "male"})))
    assert _out(coding)["display"] == ["Male"]


def test_lookup_stored_code_system(client: FlaskClient, stored: dict[str, str]) -> None:
    out = _out(client.get("/fhir/CodeSystem/$lookup?system=urn:example:colours&code=red"
                          "&version=2"))
    assert out["name"] == ["Colours"] and out["display"] == ["Red"]
    [designation] = out["designation"]
    assert {"name": "value", "valueString": "Rouge"} in designation
    assert {"name": "language", "valueCode": "fr"} in designation


@pytest.mark.parametrize("query,status,says", [
    (f"?system={ISSUE_CS}&code=nope", 404, "'nope'"),
    ("?system=urn:nope&code=x", 404, "urn:nope"),
    ("?code=invalid", 400, "code system"),
    (f"?system={ISSUE_CS}", 400, "needs a code"),
    (f"?system={ISSUE_CS}&code=invalid&version=3.0", 404, "3.0"),
])
def test_lookup_errors(client: FlaskClient, query: str, status: int, says: str) -> None:
    assert says in _err(client.get(f"/fhir/CodeSystem/$lookup{query}"), status)


# --- $validate-code ------------------------------------------------------------------------

def test_validate_code_core(client: FlaskClient) -> None:
    base = f"/fhir/ValueSet/$validate-code?url={GENDER}&system={GENDER_CS}"
    ok = _out(client.get(f"{base}&code=female"))
    assert ok["result"] == [True] and ok["display"] == ["Female"] and "message" not in ok
    wrong = _out(client.get(f"{base}&code=female&display=Woman"))
    assert wrong["result"] == [True] and "Woman" in wrong["message"][0]
    no = _out(client.get(f"{base}&code=woman"))
    assert no["result"] == [False] and GENDER in no["message"][0]
    other_system = _out(client.get(f"/fhir/ValueSet/$validate-code?url={GENDER}"
                                   "&system=urn:other&code=female"))
    assert other_system["result"] == [False]
    cc = {"coding": [{"system": "urn:x", "code": "f"}, {"system": GENDER_CS, "code": "male"}]}
    r = client.post("/fhir/ValueSet/$validate-code", headers=H, data=_p(
        ("url", "valueUri", GENDER), ("codeableConcept", "valueCodeableConcept", cc)))
    assert _out(r)["result"] == [True]
    cc_bad = {"coding": [{"system": "urn:x", "code": "f"}]}
    r = client.post("/fhir/ValueSet/$validate-code", headers=H, data=_p(
        ("url", "valueUri", GENDER), ("codeableConcept", "valueCodeableConcept", cc_bad)))
    assert _out(r)["result"] == [False]


def test_validate_code_stored(client: FlaskClient, stored: dict[str, str]) -> None:
    r = client.post(f"/fhir/ValueSet/{stored['mixed']}/$validate-code", headers=H, data=_p(
        ("coding", "valueCoding", {"system": "urn:example:colours", "code": "red"})))
    assert _out(r) == {"result": [True], "display": ["Red"]}
    excluded = _out(client.get(f"/fhir/ValueSet/{stored['mixed']}/$validate-code"
                               "?system=urn:example:colours&code=warm"))
    assert excluded["result"] == [False]
    designation = _out(client.get("/fhir/ValueSet/$validate-code?url=urn:example:warm"
                                  "&system=urn:example:colours&code=red&display=Rouge"))
    assert "message" not in designation


@pytest.mark.parametrize("query,status", [
    (f"?url={GENDER}", 400),  # no code
    (f"?system={GENDER_CS}&code=male", 400),  # no value set
    ("?url=urn:nope&code=male", 404),
    (f"?url={SNOMED_VS}&system=http://snomed.info/sct&code=22298006", 422),
])
def test_validate_code_errors(client: FlaskClient, query: str, status: int) -> None:
    _err(client.get(f"/fhir/ValueSet/$validate-code{query}"), status)
    both = _p(("url", "valueUri", GENDER), ("code", "valueCode", "male"),
              ("coding", "valueCoding", {"system": GENDER_CS, "code": "male"}))
    _err(client.post("/fhir/ValueSet/$validate-code", headers=H, data=both), 400)


@pytest.mark.parametrize("path,entries", [
    ("ValueSet/$expand", [("valueSet", "resource", {"resourceType": "ValueSet",
                                                     "status": "active", "compose": "x"})]),
    ("ValueSet/$expand", [("valueSet", "resource", {"resourceType": "ValueSet"})]),  # no status
    ("CodeSystem/$lookup", [("coding", "valueCoding", {"system": 5, "code": "male"})]),
    ("CodeSystem/$lookup", [("coding", "valueCoding", {"system": GENDER_CS}),
                            ("code", "valueCode", "male")]),
    ("ValueSet/$validate-code", [("url", "valueUri", GENDER), ("codeableConcept",
                                  "valueCodeableConcept", {"coding": {"code": "male"}})]),
    ("ValueSet/$validate-code", [("url", "valueUri", GENDER), ("coding", "valueCoding",
                                  {"system": GENDER_CS, "code": ["male"]})]),
    ("ValueSet/$validate-code", [("url", "valueUri", GENDER), ("code", "valueCode", "male"),
                                 ("system", "valueUri", GENDER_CS),
                                 ("display", "valueString", "Male"),
                                 ("codeableConcept", "valueCodeableConcept", {"text": "x"})]),
])
def test_malformed_inputs_are_400(client: FlaskClient, path: str,
                                  entries: list[tuple[str, str, Any]]) -> None:
    _err(client.post(f"/fhir/{path}", headers=H, data=_p(*entries)), 400)
