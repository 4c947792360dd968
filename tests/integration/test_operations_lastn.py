"""`Observation/$lastn` over HTTP on both backends
(https://hl7.org/fhir/R4/observation-operation-lastn.html): per code group the newest `max`,
ties kept, codings grouped transitively, the search parameters as filters, the compartment
form fhirpy uses, bad input, and a patient-scoped SMART token that must not see another
patient's Observations."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.integration.smart_support import SmartServer, bearer, token_for

H = {"Content-Type": "application/fhir+json"}
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"


def _obs(oid: str, codes: str, date: str | None, patient: str = "p1",
         category: str = "vital-signs", **more: Any) -> dict[str, Any]:
    """An Observation coded with the LOINC codes of `codes` ("a+b": two codings)."""
    body: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "category": [{"coding": [{"system": VITALS, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": c}
                            for c in codes.split("+")]},
        "subject": {"reference": f"Patient/{patient}"}, **more,
    }
    if date is not None:
        body["effectiveDateTime"] = date
    return body


def _put(client: FlaskClient, body: dict[str, Any]) -> None:
    r = client.put(f"/fhir/{body['resourceType']}/{body['id']}", data=json.dumps(body), headers=H)
    assert r.status_code in (200, 201), r.json


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    """p1: code A three times (a2 newest), B once, C+D (linking C and D) and D (newest of
    the C/D group), a laboratory E; p2: a newer A."""
    for pid in ("p1", "p2"):
        _put(client, {"resourceType": "Patient", "id": pid})
    for body in (
        _obs("a1", "A", "2020-01-01"), _obs("a2", "A", "2022-03-04T10:00:00Z"),
        _obs("a3", "A", "2021-06-01"), _obs("b1", "B", "2019-01-01"),
        _obs("cd", "C+D", "2018-01-01"), _obs("d1", "D", "2023-01-01"),
        _obs("c1", "C", "2017-01-01"),
        _obs("e1", "E", "2020-05-05", category="laboratory"),
        _obs("x1", "A", "2024-01-01", patient="p2"),
    ):
        _put(client, body)
    return client


def _ids(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.json
    bundle = resp.json
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    ids = [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    assert bundle["total"] == len(ids)
    return ids


def _diag(resp: Any) -> str:
    assert resp.json["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in resp.json["issue"])


def test_newest_per_code_group_in_code_order(seeded: FlaskClient) -> None:
    got = _ids(seeded.get("/fhir/Observation/$lastn?patient=p1&category=vital-signs"))
    # groups A, B, {C, D} (cd links them), newest first in each; E is laboratory
    assert got == ["a2", "b1", "d1"]
    got = _ids(seeded.get("/fhir/Observation/$lastn?patient=Patient/p1&category=vital-signs"
                          "&max=2"))
    assert got == ["a2", "a3", "b1", "d1", "cd"]
    everything = _ids(seeded.get("/fhir/Observation/$lastn?subject=Patient/p1"
                                 "&category=vital-signs&max=10"))
    assert everything == ["a2", "a3", "a1", "b1", "d1", "cd", "c1"]


def test_filters_are_search_parameters(seeded: FlaskClient) -> None:
    base = "/fhir/Observation/$lastn?patient=p1"
    assert _ids(seeded.get(f"{base}&code=http://loinc.org|A&max=2")) == ["a2", "a3"]
    assert _ids(seeded.get(f"{base}&category=laboratory")) == ["e1"]
    assert _ids(seeded.get(f"{base}&code=A,B&date=lt2021-01-01")) == ["a1", "b1"]
    assert _ids(seeded.get(f"{base}&category={VITALS}|vital-signs&code=C")) == ["cd"]
    assert _ids(seeded.get("/fhir/Observation/$lastn?patient=p2&category=vital-signs")) == ["x1"]
    assert _ids(seeded.get("/fhir/Observation/$lastn?patient=nobody&category=vital-signs")) == []


def test_ties_are_kept_and_undated_rank_last(client: FlaskClient) -> None:
    _put(client, {"resourceType": "Patient", "id": "p1"})
    for body in (_obs("t1", "A", "2020-01-01"), _obs("t2", "A", "2020-01-01"),
                 _obs("t0", "A", "2019-01-01"), _obs("n1", "A", None)):
        _put(client, body)
    got = _ids(client.get("/fhir/Observation/$lastn?patient=p1&code=A"))
    assert sorted(got) == ["t1", "t2"]  # "both will be returned"
    got = _ids(client.get("/fhir/Observation/$lastn?patient=p1&code=A&max=4"))
    assert sorted(got[:2]) == ["t1", "t2"] and got[2:] == ["t0", "n1"]


def test_text_only_codes_are_grouped_by_text(client: FlaskClient) -> None:
    _put(client, {"resourceType": "Patient", "id": "p1"})
    for oid, text, date in (("s1", "Mood", "2020-01-01"), ("s2", "Mood", "2021-01-01"),
                            ("s3", "Sleep", "2019-01-01")):
        body = _obs(oid, "X", date, category="survey")
        body["code"] = {"text": text}
        _put(client, body)
    assert _ids(client.get("/fhir/Observation/$lastn?patient=p1&category=survey")) == \
        ["s2", "s3"]


def test_compartment_form_and_post(seeded: FlaskClient) -> None:
    """fhirpy's `patient.execute("Observation/$lastn")`: Patient/[id]/Observation/$lastn."""
    got = _ids(seeded.get("/fhir/Patient/p1/Observation/$lastn?category=vital-signs"))
    assert got == ["a2", "b1", "d1"]
    assert _ids(seeded.get("/fhir/Patient/p2/Observation/$lastn?category=vital-signs")) == \
        ["x1"]
    posted = seeded.post("/fhir/Observation/$lastn?patient=p1&category=vital-signs",
                         headers=H, data=json.dumps({"resourceType": "Parameters", "parameter": [
                             {"name": "max", "valuePositiveInt": 2}]}))
    assert _ids(posted) == ["a2", "a3", "b1", "d1", "cd"]
    r = seeded.get("/fhir/Patient/p1/Observation/$lastn?category=vital-signs&max=2")
    links = {link["relation"]: link["url"] for link in r.json["link"]}
    assert links["self"].endswith("/fhir/Patient/p1/Observation/$lastn?max=2&category=vital-signs")


def test_include_and_restricted_format(seeded: FlaskClient) -> None:
    r = seeded.get("/fhir/Observation/$lastn?patient=p1&code=B&_include=Observation:subject")
    modes = [(e["search"]["mode"], e["resource"]["id"]) for e in r.json["entry"]]
    assert modes == [("match", "b1"), ("include", "p1")]
    r = seeded.get("/fhir/Observation/$lastn?patient=p1&code=B&_elements=status")
    [entry] = r.json["entry"]
    assert "effectiveDateTime" not in entry["resource"] and entry["resource"]["status"] == "final"


@pytest.mark.parametrize(("query", "status", "needle"), [
    ("category=vital-signs", 400, "needs a subject"),
    ("patient=p1", 400, "'category' parameter or a code"),
    ("patient=p1&code=A&max=0", 400, "max"),
    ("patient=p1&code=A&max=two", 400, "integer"),
    ("patient=p1&code=A&max=1&max=2", 400, "at most 1"),
    ("patient=p1&code=A&_sort=-date", 400, "_sort"),
    ("patient=p1&code=A&_count=5", 400, "_count"),
    ("patient=p1&code=A&date=yesterday", 400, "date"),
    ("patient=p1&code=A&code:nonsense=x", 400, "nonsense"),
])
def test_bad_input(seeded: FlaskClient, query: str, status: int, needle: str) -> None:
    r = seeded.get(f"/fhir/Observation/$lastn?{query}")
    assert r.status_code == status, r.json
    assert needle in _diag(r)


def test_bad_levels_and_strict_handling(seeded: FlaskClient) -> None:
    r = seeded.get("/fhir/Observation/a1/$lastn?patient=p1&code=A")
    assert r.status_code == 400 and "cannot be invoked" in _diag(r)
    r = seeded.get("/fhir/Observation/a1/Observation/$lastn?code=A")
    assert r.status_code == 400 and "compartment" in _diag(r)
    r = seeded.get("/fhir/Patient/p1/Observation/$meta")
    assert r.status_code == 400 and "compartment" in _diag(r)
    lenient = seeded.get("/fhir/Observation/$lastn?patient=p1&code=A&frobnicate=1")
    assert lenient.status_code == 200
    assert [e["search"]["mode"] for e in lenient.json["entry"]] == ["match", "outcome"]
    strict = seeded.get("/fhir/Observation/$lastn?patient=p1&code=A&frobnicate=1",
                        headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and "frobnicate" in _diag(strict)


def test_patient_token_sees_only_its_own(world: SmartServer) -> None:
    tok = token_for(world, "launch/patient patient/*.rs", "doc", patient="pa")

    def ids(path: str) -> list[str]:
        r = requests.get(world.url(path), headers=bearer(tok))
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]

    assert ids("Observation/$lastn?patient=pa&category=laboratory") == ["oa2"]
    # Bob's laboratory result shares oa2's code: it must not win the group, nor show alone
    assert ids("Observation/$lastn?patient=pb&category=laboratory") == []
    assert ids("Observation/$lastn?code=2345-7&subject:missing=false") == ["oa2"]
    assert ids("Patient/pb/Observation/$lastn?category=vital-signs") == []
    assert ids("Observation/$lastn?patient=pa&code=8867-4&_include=Observation:subject") == \
        ["oa1", "pa"]
    # a token without Observation access gets a 403, not an empty answer
    other = token_for(world, "launch/patient patient/Patient.rs", "doc", patient="pa")
    r = requests.get(world.url("Observation/$lastn?patient=pa&category=laboratory"),
                     headers=bearer(other))
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
