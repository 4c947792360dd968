"""`Patient/$everything` and `Encounter/$everything` over HTTP on both backends
(https://hl7.org/fhir/R4/patient-operation-everything.html,
https://hl7.org/fhir/R4/encounter-operation-everything.html): the compartment with what it
refers to, `_type`, `_since`, `_count` with `next` links that hold while others write, bad
input, and patient-scoped SMART tokens that must not reach another patient's record."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.integration.smart_support import SmartServer, bearer, token_for

H = {"Content-Type": "application/fhir+json"}


def _put(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"/fhir/{body['resourceType']}/{body['id']}", data=json.dumps(body), headers=H)
    assert r.status_code in (200, 201), r.json
    out: dict[str, Any] = r.json
    return out


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


P1_RECORD = {"Patient/p1", "Encounter/e1", "Observation/o1", "MedicationRequest/mr1",
             "Condition/c1"}
P1_REFERRED = {"Organization/org1", "Practitioner/d1", "Location/l1", "Medication/m1"}


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    """p1's record (P1_RECORD, referring to P1_REFERRED) and p2's (o2, performed by d2)."""
    for body in (
        {"resourceType": "Organization", "id": "org1", "name": "Clinic"},
        {"resourceType": "Practitioner", "id": "d1"},
        {"resourceType": "Practitioner", "id": "d2"},
        {"resourceType": "Location", "id": "l1", "name": "Room 1"},
        {"resourceType": "Medication", "id": "m1"},
        {"resourceType": "Patient", "id": "p1", "managingOrganization": ref("Organization/org1"),
         "generalPractitioner": [ref("Practitioner/d1")]},
        {"resourceType": "Patient", "id": "p2"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": ref("Patient/p1"), "location": [{"location": ref("Location/l1")}],
         "serviceProvider": ref("Organization/org1")},
        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "t"},
         "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"),
         "performer": [ref("Practitioner/d1")]},
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
         "intent": "order", "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"),
         "medicationReference": ref("Medication/m1")},
        {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1")},
        {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "t"},
         "subject": ref("Patient/p2"), "performer": [ref("Practitioner/d2")]},
    ):
        _put(client, body)
    return client


def _bundle(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.json
    bundle: dict[str, Any] = resp.json
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def _ids(bundle: dict[str, Any], mode: str) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def _next(bundle: dict[str, Any]) -> str | None:
    found = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    return found[0] if found else None


def _diag(resp: Any) -> str:
    assert resp.json["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in resp.json["issue"])


def test_patient_record_with_what_it_refers_to(seeded: FlaskClient) -> None:
    bundle = _bundle(seeded.get("/fhir/Patient/p1/$everything"))
    assert _ids(bundle, "match") == P1_RECORD
    assert _ids(bundle, "include") == P1_REFERRED
    assert bundle["total"] == len(P1_RECORD)
    posted = _bundle(seeded.post("/fhir/Patient/p1/$everything"))
    assert _ids(posted, "match") == P1_RECORD


def test_type_filters_and_includes(seeded: FlaskClient) -> None:
    only = _bundle(seeded.get("/fhir/Patient/p1/$everything?_type=Observation,Condition"))
    assert _ids(only, "match") == {"Observation/o1", "Condition/c1"}
    assert _ids(only, "include") == set()
    repeated = _bundle(seeded.get("/fhir/Patient/p1/$everything?_type=Observation"
                                  "&_type=Practitioner"))
    assert _ids(repeated, "match") == {"Observation/o1"}
    assert _ids(repeated, "include") == {"Practitioner/d1"}
    none = _bundle(seeded.get("/fhir/Patient/p1/$everything?_type=Practitioner"))
    assert "entry" not in none and none["total"] == 0


def test_since_keeps_what_changed(seeded: FlaskClient) -> None:
    changed = _put(seeded, {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1"),
                            "note": [{"text": "updated"}]})
    since = changed["meta"]["lastUpdated"]
    bundle = _bundle(seeded.get("/fhir/Patient/p1/$everything",
                                query_string={"_since": since}))
    assert _ids(bundle, "match") == {"Condition/c1"}
    assert "_since=" in bundle["link"][0]["url"]
    later = _bundle(seeded.get("/fhir/Patient/p1/$everything",
                               query_string={"_since": "2999-01-01T00:00:00Z"}))
    assert _ids(later, "match") == set()


def test_pages_follow_next_links_and_hold_while_others_write(seeded: FlaskClient) -> None:
    page = _bundle(seeded.get("/fhir/Patient/p1/$everything?_count=2"))
    pages = [page]
    first = _ids(page, "match")
    assert len(first) == 2
    _put(seeded, {"resourceType": "Condition", "id": "c-new", "subject": ref("Patient/p1")})
    _put(seeded, {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1"),
                  "note": [{"text": "changed while paging"}]})
    while (url := _next(page)) is not None:
        assert "/fhir/Patient/p1/$everything?" in url and "_count=2" in url
        page = _bundle(seeded.get(url.removeprefix("http://localhost")))
        pages.append(page)
        assert len(pages) < 10
    seen: list[str] = [i for p in pages for i in _ids(p, "match")]
    assert len(seen) == len(set(seen)), "an entry came twice"
    assert P1_RECORD <= set(seen) <= P1_RECORD | {"Condition/c-new"}
    for p in pages:  # each page brings what its own matches refer to
        if "Observation/o1" in _ids(p, "match"):
            assert "Practitioner/d1" in _ids(p, "include")


def test_encounter_record(seeded: FlaskClient) -> None:
    bundle = _bundle(seeded.get("/fhir/Encounter/e1/$everything"))
    assert _ids(bundle, "match") == {"Encounter/e1", "Observation/o1", "MedicationRequest/mr1"}
    assert _ids(bundle, "include") == {"Patient/p1", "Location/l1", "Organization/org1",
                                       "Practitioner/d1", "Medication/m1"}
    typed = _bundle(seeded.get("/fhir/Encounter/e1/$everything?_type=Observation&_count=1"))
    assert _ids(typed, "match") == {"Observation/o1"} and _next(typed) is None


def test_type_level_is_every_record(seeded: FlaskClient) -> None:
    bundle = _bundle(seeded.get("/fhir/Patient/$everything?_count=1000"))
    assert _ids(bundle, "match") == P1_RECORD | {"Patient/p2", "Observation/o2"}
    assert _ids(bundle, "include") == P1_REFERRED | {"Practitioner/d2"}
    assert "total" not in bundle


@pytest.mark.parametrize(("path", "status", "needle"), [
    ("Patient/nobody/$everything", 404, "nobody"),
    ("Patient/p1/$everything?_type=Bogus", 400, "Bogus"),
    ("Patient/p1/$everything?_count=-1", 400, "_count"),
    ("Patient/p1/$everything?_count=many", 400, "integer"),
    ("Patient/p1/$everything?_since=yesterday", 400, "_since"),
    ("Patient/p1/$everything?_since=2020-01-01", 400, "_since"),  # an instant, not a date
    ("Patient/p1/$everything?start=2020-01-01", 400, "start"),
    ("Patient/p1/$everything?code=x", 400, "'code'"),
    ("Patient/p1/$everything?_cursor=garbage", 400, "_cursor"),
    ("Encounter/$everything", 400, "cannot be invoked"),
    ("Encounter/nope/$everything", 404, "nope"),
    ("Patient/p1/Patient/$everything", 400, "compartment"),
])
def test_bad_input(seeded: FlaskClient, path: str, status: int, needle: str) -> None:
    r = seeded.get(f"/fhir/{path}")
    assert r.status_code == status, r.json
    assert needle in _diag(r)


def test_deleted_patient_is_gone(seeded: FlaskClient) -> None:
    assert seeded.delete("/fhir/Patient/p2").status_code in (200, 204)
    assert seeded.get("/fhir/Patient/p2/$everything").status_code == 410


ANN = {"Patient/pa", "Encounter/ea", "Observation/oa1", "Observation/oa2", "Observation/oa3"}


def test_patient_token_gets_only_its_own_record(world: SmartServer) -> None:
    tok = token_for(world, "launch/patient patient/*.rs", "doc", patient="pa")

    def get(path: str) -> requests.Response:
        return requests.get(world.url(path), headers=bearer(tok))

    own = get("Patient/pa/$everything").json()
    assert _ids(own, "match") == ANN and own["total"] == len(ANN)
    assert _ids(own, "include") == set()  # oa3's focus (Bob) is not a referred type
    for path in ("Patient/pb/$everything", "Encounter/eb/$everything"):
        refused = get(path)
        assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert _ids(get("Patient/$everything").json(), "match") == ANN
    enc = get("Encounter/ea/$everything").json()
    assert _ids(enc, "match") == {"Encounter/ea"} and _ids(enc, "include") == {"Patient/pa"}
    seen: set[str] = set()
    page = get("Patient/$everything?_count=1").json()
    while True:
        seen |= _ids(page, "match") | _ids(page, "include")
        url = _next(page)
        if url is None:
            break
        page = requests.get(url, headers=bearer(tok)).json()
    assert seen == ANN


def test_practitioner_sees_referred_resources_only_when_allowed(world: SmartServer) -> None:
    """A user/ token with Observation access but not Practitioner read gets Bob's
    Observations without dr1 coming in as an include."""
    tok = token_for(world, "user/Patient.rs user/Observation.rs user/Encounter.rs", "doc")
    bundle = requests.get(world.url("Patient/pb/$everything"), headers=bearer(tok)).json()
    assert _ids(bundle, "match") == {"Patient/pb", "Encounter/eb", "Observation/ob1",
                                     "Observation/ob2"}
    assert _ids(bundle, "include") == set()
    full = token_for(world, "user/*.rs", "doc")
    bundle = requests.get(world.url("Patient/pb/$everything"), headers=bearer(full)).json()
    assert _ids(bundle, "include") == {"Practitioner/dr1"}
