"""Versioning, concurrency, conditional read, Prefer and content negotiation
(https://hl7.org/fhir/R4/http.html#versioning, #concurrency, #cread, #ops, #mime-type)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import LiveServer
from tests.integration.helpers import FHIR_JSON, outcome_text, post, put


def _patient(server: LiveServer) -> str:
    r = post(server, "Patient", {"resourceType": "Patient", "gender": "male"})
    assert r.status_code == 201
    return str(r.json()["id"])


def test_if_match_rejects_stale_version(server: LiveServer) -> None:
    pid = _patient(server)
    body = {"resourceType": "Patient", "id": pid, "gender": "female"}
    ok = put(server, f"Patient/{pid}", body, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"'
    stale = put(server, f"Patient/{pid}", body, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert "does not match" in outcome_text(stale)
    assert put(server, f"Patient/{pid}", body, **{"If-Match": "garbage"}).status_code == 400
    assert put(server, "Patient/nope", {"resourceType": "Patient", "id": "nope"},
               **{"If-Match": 'W/"1"'}).status_code == 412


def test_concurrent_if_match_updates_never_both_win(server: LiveServer) -> None:
    pid = _patient(server)

    def attempt(i: int) -> int:
        body = {"resourceType": "Patient", "id": pid, "gender": "other",
                "name": [{"family": f"writer{i}"}]}
        return put(server, f"Patient/{pid}", body, **{"If-Match": 'W/"1"'}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(attempt, range(8)))
    assert codes.count(200) == 1, codes
    assert all(c in (200, 409, 412) for c in codes), codes
    hist = server.http.get(server.url(f"Patient/{pid}/_history")).json()
    assert hist["total"] == 2


def test_concurrent_unconditional_updates_all_get_distinct_versions(server: LiveServer) -> None:
    pid = _patient(server)

    def attempt(i: int) -> int:
        body = {"resourceType": "Patient", "id": pid, "name": [{"family": f"w{i}"}]}
        return put(server, f"Patient/{pid}", body).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(attempt, range(12)))
    assert all(c in (200, 409) for c in codes), codes
    hist = server.http.get(server.url(f"Patient/{pid}/_history?_count=100")).json()
    versions = [e["resource"]["meta"]["versionId"] for e in hist["entry"]]
    assert len(versions) == len(set(versions)) == 1 + codes.count(200)


def test_conditional_read(server: LiveServer) -> None:
    pid = _patient(server)
    first = server.http.get(server.url(f"Patient/{pid}"))
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    r = server.http.get(server.url(f"Patient/{pid}"), headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert "Content-Type" not in r.headers
    r = server.http.get(server.url(f"Patient/{pid}"), headers={"If-None-Match": 'W/"9"'})
    assert r.status_code == 200
    r = server.http.get(server.url(f"Patient/{pid}"), headers={"If-Modified-Since": modified})
    assert r.status_code == 304
    r = server.http.get(server.url(f"Patient/{pid}"),
                        headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status_code == 200


def test_prefer_return(server: LiveServer) -> None:
    body = {"resourceType": "Patient"}
    r = post(server, "Patient", body, Prefer="return=minimal")
    assert r.status_code == 201 and r.content == b"" and "Location" in r.headers
    assert "Content-Type" not in r.headers  # nothing to describe, and never text/html
    gone = server.http.delete(server.url(f"Patient/{r.headers['Location'].split('/')[-3]}"))
    assert gone.status_code == 204 and "Content-Type" not in gone.headers
    r = post(server, "Patient", body, Prefer="return=OperationOutcome")
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"
    r = post(server, "Patient", body, Prefer="return=representation")
    assert r.json()["resourceType"] == "Patient"


def test_format_and_accept(server: LiveServer) -> None:
    pid = _patient(server)
    url = server.url(f"Patient/{pid}")
    assert server.http.get(url, params={"_format": "json"}).status_code == 200
    r = server.http.get(url, params={"_format": "application/json"})
    assert r.headers["Content-Type"].startswith("application/json")
    r = server.http.get(url, params={"_format": "xml"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+xml")
    r = server.http.get(url, params={"_format": "html"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    r = server.http.get(url, headers={"Accept": "text/turtle"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    r = server.http.get(url, headers={"Accept": "text/html;q=0.9, application/fhir+json"})
    assert r.status_code == 200
    r = server.http.get(url, headers={"Accept": "*/*"})
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    pretty = server.http.get(url, params={"_pretty": "true"})
    assert b"\n  " in pretty.content and pretty.json() == server.http.get(url).json()


def test_unsupported_content_type_and_bad_json(server: LiveServer) -> None:
    r = server.http.post(server.url("Patient"), data="<Patient/>",
                         headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = server.http.post(server.url("Patient"), data="{not json", headers=FHIR_JSON)
    assert r.status_code == 400 and "not valid JSON" in outcome_text(r)
    r = server.http.post(server.url("Patient"), data="[1,2]", headers=FHIR_JSON)
    assert r.status_code == 400
    r = server.http.post(server.url("Patient"), data="", headers=FHIR_JSON)
    assert r.status_code == 400


def test_method_not_allowed(server: LiveServer) -> None:
    r = server.http.post(server.url("Patient/123"), data="{}", headers=FHIR_JSON)
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


def test_validation_errors_name_the_element(server: LiveServer) -> None:
    bad = {"resourceType": "Patient", "gender": "maybe", "birthDate": "2020-02-30",
           "name": {"family": "not-an-array"}, "extra": 1}
    r = post(server, "Patient", bad)
    assert r.status_code == 400
    text = outcome_text(r)
    for path in ("Patient.gender", "Patient.birthDate", "Patient.name", "Patient.extra"):
        assert path in text, text
    obs = {"resourceType": "Observation", "valueString": "x", "valueBoolean": True}
    text = outcome_text(post(server, "Observation", obs))
    assert "Observation.status" in text and "Observation.code" in text
    # nothing was written
    hist = server.http.get(server.url("_history")).json()
    assert hist["total"] == 0


def test_metadata(server: LiveServer) -> None:
    r = server.http.get(server.url("metadata"))
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in cs["format"]
    rest = cs["rest"][0]
    patient = next(x for x in rest["resource"] if x["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert codes == {"read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type"}
    assert {i["code"] for i in rest["interaction"]} == {
        "transaction", "batch", "search-system", "history-system"}
    assert patient["conditionalDelete"] == "single" and patient["updateCreate"] is True
    assert len(rest["resource"]) == 146
    assert json.dumps(cs)  # serialisable
