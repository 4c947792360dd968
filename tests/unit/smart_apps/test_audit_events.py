"""AuditEvent building (smart_apps.audit.events): pure, request and answer in, an R4
AuditEvent out, valid against the R4 structure definitions."""

from __future__ import annotations

import base64

import orjson

from fhir_server.principal import Principal, SecurityEvent
from fhir_server.request import FhirRequest, FhirResponse
from resources.validation import validate_resource
from smart_apps.audit.events import outcome_code, rest_event, security_audit_event

DOC = Principal(kind="user", client_id="app1", username="doc", fhir_user="Practitioner/d",
                scopes=("user/*.rs",), token_id="jti-1")


def _errors(event: dict[str, object]) -> list[object]:
    return [p for p in validate_resource({**event, "id": "x"})
            if p.severity in ("error", "fatal")]


def test_outcome_codes() -> None:
    assert [outcome_code(s) for s in (200, 201, 304, 400, 401, 403, 404, 500, 503)] == \
        ["0", "0", "0", "4", "4", "4", "4", "8", "8"]


def test_read_names_the_resource_and_its_patient() -> None:
    body = orjson.dumps({"resourceType": "Observation", "id": "o1",
                         "subject": {"reference": "Patient/p9"}})
    e = rest_event(FhirRequest("GET", "Observation/o1", principal=DOC, remote_addr="10.0.0.7"),
                   FhirResponse(200, raw=body, headers={
                       "Content-Location": "http://h/fhir/Observation/o1/_history/3"}),
                   "http://h/fhir")
    assert not _errors(e)
    assert e["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction",
                             "code": "read"}]
    assert e["action"] == "R" and e["outcome"] == "0"
    assert [x["what"]["reference"] for x in e["entity"]] == ["Observation/o1/_history/3",
                                                              "Patient/p9"]
    agent = e["agent"][0]
    assert agent["who"] == {"reference": "Practitioner/d", "display": "doc", "identifier": {
        "system": "https://telefhir.org/fhir/sid/client-id", "value": "app1"}}
    assert agent["altId"] == "jti-1" and agent["network"]["address"] == "10.0.0.7"


def test_search_is_a_query_entity_and_failures_say_why() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "bad date"}]}
    e = rest_event(FhirRequest("GET", "Observation", [("patient", "p1"), ("date", "x")],
                               principal=DOC),
                   FhirResponse(400, resource=outcome), "http://h/fhir")
    assert not _errors(e)
    assert e["action"] == "E" and e["outcome"] == "4"
    assert e["outcomeDesc"] == "HTTP 400: bad date"
    query = e["entity"][0]
    assert base64.b64decode(query["query"]).decode() == "Observation?patient=p1&date=x"
    assert e["entity"][1]["what"] == {"reference": "Patient/p1"}


def test_an_unroutable_request_and_no_principal() -> None:
    e = rest_event(FhirRequest("GET", "NotAType/1"), FhirResponse(404), "http://h/fhir")
    assert not _errors(e)
    assert e["agent"][0]["who"]["display"] == "unauthenticated" and e["outcome"] == "4"


def test_sign_in_is_user_authentication() -> None:
    e = security_audit_event(SecurityEvent("login", "failure", username="doc",
                                           remote_addr="10.0.0.8", detail={"reason": "locked"}),
                             "http://h")
    assert not _errors(e)
    assert e["type"]["code"] == "110114"
    assert [c["code"] for c in e["subtype"]] == ["110122", "login"]
    assert e["outcome"] == "4" and e["outcomeDesc"] == "login failed: locked"
    assert e["agent"][0]["name"] == "doc"
