"""The audit trail over HTTP on both backends: an AuditEvent (IHE BALP shape) for reads,
searches, writes, refusals (401, 403), sign-ins and tokens, with who (client id, fhirUser,
user name, address), what (entities, the query, the patient) and the outcome; AuditEvents are
never changed and are seen only by auditors (https://hl7.org/fhir/R4/auditevent.html)."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
import requests

from fhir_server.principal import internal
from fhir_server.request import FhirRequest
from resources.validation import validate_resource
from tests.integration.audit_support import (
    AUTH,
    REST,
    audit_events,
    auditor_token,
    code_of,
    entity_refs,
    queries,
    requestor,
    subtypes,
)
from tests.integration.smart_support import PASSWORD, Browser, SmartServer, bearer, token_for

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _valid(event: dict[str, object]) -> None:
    errors = [p for p in validate_resource(event) if p.severity in ("error", "fatal")]
    assert not errors, (errors, event)


def test_reads_searches_and_writes_are_audited(world: SmartServer) -> None:
    tok = token_for(world, "user/*.cruds")
    h = {**bearer(tok), "Content-Type": "application/fhir+json"}
    assert requests.get(world.url("Patient/pa"), headers=h).status_code == 200
    assert requests.get(world.url("Observation/oa1/_history/1"), headers=h).status_code == 200
    assert requests.get(world.url("Observation?patient=pa&category=vital-signs"),
                        headers=h).status_code == 200
    assert requests.post(world.url("Patient/_search"), data={"family": "Beta"},
                         headers=bearer(tok)).status_code == 200
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "subject": {"reference": "Patient/pb"}}
    created = requests.post(world.url("Observation"), json=obs, headers=h)
    assert created.status_code == 201
    oid = created.json()["id"]
    assert requests.put(world.url(f"Observation/{oid}"), json={**created.json(), "status":
                                                                "amended"},
                        headers=h).status_code == 200
    assert requests.delete(world.url(f"Observation/{oid}"), headers=h).status_code == 204
    assert requests.get(world.url("Patient/nobody"), headers=h).status_code == 404

    reader = auditor_token(world)
    events = audit_events(world, reader, "type=rest")
    for e in events:
        _valid(e)
    mine = [e for e in events if requestor(e)["who"].get("identifier", {}).get("value") ==
            tok["client_id"]]
    by_sub = [(sorted(subtypes(e)), e["action"], e["outcome"]) for e in mine]
    assert by_sub == [(["read"], "R", "0"), (["vread"], "R", "0"), (["search-type"], "E", "0"),
                      (["search-type"], "E", "0"), (["create"], "C", "0"),
                      (["update"], "U", "0"), (["delete"], "D", "0"), (["read"], "R", "4")]
    read, vread, search, post_search, create, update, delete, missing = mine
    who = requestor(read)
    assert who["who"]["reference"] == "Practitioner/dr1" and who["name"] == "doc"
    assert who["network"]["address"] == "127.0.0.1"
    assert who["altId"] == world.records.token(tok["access_token"]).jti  # type: ignore[union-attr]
    assert code_of(read) == REST and read["source"]["observer"]["display"] == "telefhir"
    assert entity_refs(read) == ["Patient/pa/_history/1", "Patient/pa"]
    assert entity_refs(read, "1") == ["Patient/pa"]
    assert entity_refs(vread) == ["Observation/oa1/_history/1", "Patient/pa"]
    assert queries(search) == ["Observation?patient=pa&category=vital-signs"]
    assert entity_refs(search, "1") == ["Patient/pa"]
    assert queries(post_search) == ["Patient/_search?family=Beta"]
    assert entity_refs(create) == [f"Observation/{oid}/_history/1", "Patient/pb"]
    assert entity_refs(update) == [f"Observation/{oid}/_history/2", "Patient/pb"]
    assert entity_refs(delete) == [f"Observation/{oid}"]
    assert missing["outcomeDesc"] == "HTTP 404: Patient/nobody is not known"

    # the normal search API finds them by patient, entity, subtype, agent, outcome and date
    ids = {e["id"] for e in mine}
    by_patient = {e["id"] for e in audit_events(world, reader, "patient=pa")}
    assert {read["id"], vread["id"], search["id"]} <= by_patient
    assert create["id"] not in by_patient
    assert {e["id"] for e in audit_events(world, reader, f"entity=Observation/{oid}")} == \
        {create["id"], update["id"], delete["id"]}
    assert {e["id"] for e in audit_events(world, reader, "subtype=vread")} == {vread["id"]}
    assert {e["id"] for e in audit_events(world, reader, "agent=Practitioner/dr1")} >= ids
    assert {e["id"] for e in audit_events(world, reader, "agent-name=doc")} >= ids
    assert {e["id"] for e in audit_events(world, reader, "outcome=4")} & ids == {missing["id"]}
    since = "date=ge" + quote(read["recorded"])
    assert {e["id"] for e in audit_events(world, reader, since)} >= ids
    assert audit_events(world, reader, "date=lt2000-01-01") == []


def test_refusals_are_audited(world: SmartServer) -> None:
    ann = token_for(world, "patient/*.rs", username="ann")  # Patient/pa's own app
    assert requests.get(world.url("Patient/pb"), headers=bearer(ann)).status_code == 403
    assert requests.get(world.url("Encounter/eb"), headers={"Accept": "application/fhir+json"}
                        ).status_code == 401
    assert requests.get(world.url("Patient/pa"), headers=bearer("not-a-token")).status_code == 401
    reader = auditor_token(world)
    events = audit_events(world, reader, "outcome=4")
    refused = next(e for e in events if requestor(e)["who"].get("reference") == "Patient/pa")
    assert refused["outcome"] == "4" and refused["outcomeDesc"].startswith("HTTP 403: ")
    assert entity_refs(refused) == ["Patient/pb", "Patient/pb", "Patient/pa"]
    no_token, bad_token = [e for e in events if requestor(e)["who"]["display"] ==
                           "unauthenticated"][-2:]
    assert entity_refs(no_token) == ["Encounter/eb"]
    assert no_token["outcomeDesc"].startswith("HTTP 401: ")
    assert requestor(no_token)["network"]["address"] == "127.0.0.1"
    assert "not-a-token" not in json.dumps(bad_token)


def test_sign_in_and_tokens_are_audited(world: SmartServer) -> None:
    b = Browser(world)
    b.sign_in(b._follow(b.get(f"{world.root}/launcher")), "doc", "wrong password")
    tok = token_for(world, "user/Patient.rs offline_access")
    refreshed = requests.post(world.config["token_endpoint"], data={
        "grant_type": "refresh_token", "client_id": tok["client_id"],
        "refresh_token": tok["refresh_token"]})
    assert refreshed.status_code == 200
    assert requests.post(world.config["revocation_endpoint"], data={
        "token": refreshed.json()["access_token"], "client_id": tok["client_id"]}
                         ).status_code == 200
    reader = auditor_token(world)
    events = [e for e in audit_events(world, reader) if code_of(e) == AUTH]
    for e in events:
        _valid(e)
    failed = next(e for e in events if "110122" in subtypes(e) and e["outcome"] == "4")
    assert requestor(failed)["name"] == "doc"
    assert requestor(failed)["network"]["address"] == "127.0.0.1"
    signed_in = next(e for e in events if "110122" in subtypes(e) and e["outcome"] == "0")
    assert requestor(signed_in)["name"] == "doc"
    issued = [e for e in events if "token" in subtypes(e) and e["outcome"] == "0" and
              requestor(e)["who"].get("identifier", {}).get("value") == tok["client_id"]]
    details = [{d["type"]: d["valueString"] for d in e["entity"][0]["detail"]} for e in issued]
    assert [d["grant_type"] for d in details] == ["authorization_code", "refresh_token"]
    assert requestor(issued[0])["name"] == "doc"
    assert details[0]["scope"] == "user/Patient.rs offline_access"
    assert any("refresh" in subtypes(e) for e in events)
    assert any("revoke" in subtypes(e) for e in events)
    text = json.dumps(events)
    for secret in (PASSWORD, "wrong password", tok["access_token"], tok["refresh_token"],
                   refreshed.json()["access_token"]):
        assert secret not in text


def test_audit_events_are_never_changed(world: SmartServer) -> None:
    admin = token_for(world, "user/*.cruds", username="admin")
    h = {**bearer(admin), "Content-Type": "application/fhir+json"}
    assert requests.get(world.url("Patient/pa"), headers=h).status_code == 200
    event = audit_events(world, admin["access_token"], "subtype=read")[0]
    url = world.url(f"AuditEvent/{event['id']}")
    refused = [
        requests.post(world.url("AuditEvent"), json={**event, "id": None}, headers=h),
        requests.put(url, json={**event, "outcome": "8"}, headers=h),
        requests.delete(url, headers=h),
        requests.patch(url, json=[{"op": "replace", "path": "/outcome", "value": "8"}],
                       headers={**h, "Content-Type": "application/json-patch+json"}),
        requests.put(world.url("AuditEvent?outcome=0"), json=event, headers=h),
        requests.delete(world.url("AuditEvent?outcome=0"), headers=h),
        requests.post(world.url(f"AuditEvent/{event['id']}/$meta-add"), json={
            "resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {
                "tag": [{"system": "http://x", "code": "y"}]}}]}, headers=h),
        requests.post(world.url(""), json={"resourceType": "Bundle", "type": "transaction",
                                            "entry": [{"resource": {**event, "id": None},
                                                       "request": {"method": "POST",
                                                                   "url": "AuditEvent"}}]},
                      headers=h),
    ]
    for r in refused:
        assert r.status_code == 405, (r.request.method, r.request.url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    batch = requests.post(world.url(""), json={"resourceType": "Bundle", "type": "batch",
                                                "entry": [{"request": {"method": "DELETE",
                                                                       "url": url}}]},
                          headers=h)
    assert batch.status_code == 200
    assert batch.json()["entry"][0]["response"]["status"].startswith("405")
    again = requests.get(url, headers=h)
    assert again.status_code == 200 and again.json() == event  # version 1, as written
    # an internal component (system/*.cruds) cannot change them either
    resp = world.dispatcher.handle(FhirRequest(
        "DELETE", f"AuditEvent/{event['id']}", [], {}, b"", world.base,
        principal=internal("tests")))
    assert resp.status == 405


def test_audit_events_are_seen_only_by_auditors(world: SmartServer) -> None:
    doc = token_for(world, "user/*.rs")  # a practitioner, not an admin
    h = bearer(doc)
    assert requests.get(world.url("Patient/pa"), headers=h).status_code == 200
    some = audit_events(world, auditor_token(world), "subtype=read")[0]
    for path in ("AuditEvent", f"AuditEvent/{some['id']}", f"AuditEvent/{some['id']}/_history",
                 "AuditEvent/_history", "Patient/pa/AuditEvent", f"AuditEvent/{some['id']}/$meta"):
        r = requests.get(world.url(path), headers=h)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    for path in ("?_type=AuditEvent,Patient", "Patient?_revinclude=AuditEvent:patient",
                 "Patient/pa/*", "_history", "Patient?_id=pa&_revinclude=*"):
        r = requests.get(world.url(path), headers=h)
        assert r.status_code == 200, (path, r.text)
        types = {e["resource"]["resourceType"] for e in r.json().get("entry", [])}
        assert "AuditEvent" not in types and types, (path, types)
    # a wildcard system scope does not reach them; AuditEvent named in it, or an admin, does
    assert requests.get(world.url("AuditEvent"), headers=bearer(auditor_token(
        world, "system/*.rs"))).status_code == 403
    assert requests.get(world.url("AuditEvent"), headers=bearer(
        token_for(world, "user/AuditEvent.rs", username="doc"))).status_code == 403
    admin = token_for(world, "user/AuditEvent.rs", username="admin")
    r = requests.get(world.url("AuditEvent?subtype=read"), headers=bearer(admin))
    assert r.status_code == 200 and r.json()["entry"]
    admin_all = bearer(token_for(world, "user/*.rs", username="admin"))
    r = requests.get(world.url("Patient?_id=pa&_revinclude=AuditEvent:patient"),
                     headers=admin_all)
    assert "AuditEvent" in {e["resource"]["resourceType"] for e in r.json()["entry"]}


def test_no_secret_or_phi_in_logs(world: SmartServer, caplog: pytest.LogCaptureFixture) -> None:
    """Signing in with a password, using tokens and searching by a patient's name log none of
    them (the test's own HTTP server, werkzeug's, logs request lines; `telefhir serve` does
    not: tests/integration/test_audit_process.py reads its output; urllib3 is the test's
    client)."""
    caplog.set_level(logging.DEBUG)
    tok = token_for(world, "user/*.rs offline_access")
    h = bearer(tok)
    assert requests.get(world.url("Patient?name=Alpha"), headers=h).status_code == 200
    assert requests.get(world.url("Patient?family=Zyxwv&birthdate=1970-01-01"),
                        headers=h).status_code == 200
    assert requests.post(world.url("Patient/_search"), data={"name": "Alpha"},
                         headers=h).status_code == 200
    assert requests.post(world.url(""), data=b"{not json", headers={
        **h, "Content-Type": "application/fhir+json"}).status_code == 400
    assert requests.post(world.config["token_endpoint"], data={
        "grant_type": "refresh_token", "client_id": tok["client_id"],
        "refresh_token": tok["refresh_token"]}).status_code == 200
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records
                       if r.name != "werkzeug" and not r.name.startswith("urllib3"))
    for secret in (PASSWORD, tok["access_token"], tok["refresh_token"], "Alpha", "Zyxwv",
                   "1970-01-01"):
        assert secret not in logged, secret


def test_internal_principals_are_audited(world: SmartServer) -> None:
    """The seed writes of the fixture came from an internal principal through the dispatcher;
    a request run inside an internal client's own transaction (as the HL7 v2 gateway's) has
    its AuditEvent written in that transaction."""
    from fhir_server.app import build_dispatcher

    ctx = world.app.extensions["telefhir.context"]
    with ctx.store.transaction() as tx:
        resp = build_dispatcher(ctx.within(tx)).handle(FhirRequest(
            "PUT", "Patient/pz", [], {"content-type": "application/fhir+json"},
            json.dumps({"resourceType": "Patient", "id": "pz"}).encode(), world.base,
            principal=internal("hl7v2-gateway")))
        assert resp.status == 201
    reader = auditor_token(world)
    seeded = audit_events(world, reader, "entity=Patient/pa")
    assert any(requestor(e)["who"]["identifier"]["value"] == "telefhir-tests" and
               "update" in subtypes(e) for e in seeded)
    gateway = audit_events(world, reader, "entity=Patient/pz")
    assert [requestor(e)["who"]["identifier"]["value"] for e in gateway] == \
        ["telefhir-hl7v2-gateway"]
    assert entity_refs(gateway[0]) == ["Patient/pz/_history/1", "Patient/pz"]


def test_an_answer_whose_audit_record_fails_is_withheld(world: SmartServer) -> None:
    tok = token_for(world, "user/*.rs")
    store = world.app.extensions["telefhir.context"].store
    store.ensure_tables(["DROP TABLE audit_log"])
    try:
        r = requests.get(world.url("Patient/pa"), headers=bearer(tok))
        assert r.status_code == 500
        assert "audit" in r.json()["issue"][0]["diagnostics"]
        assert "Alpha" not in r.text
    finally:
        from smart_apps.audit.writer import DDL

        store.ensure_tables(DDL)
    assert requests.get(world.url("Patient/pa"), headers=bearer(tok)).status_code == 200
