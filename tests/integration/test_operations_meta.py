"""The operations registry over HTTP, through `$meta`, `$meta-add` and `$meta-delete`
(https://hl7.org/fhir/R4/operations.html, https://hl7.org/fhir/R4/resource-operation-meta.html),
on both backends."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

H = {"Content-Type": "application/fhir+json"}


def _params(meta: dict[str, Any]) -> str:
    return json.dumps({"resourceType": "Parameters",
                       "parameter": [{"name": "meta", "valueMeta": meta}]})


def _meta(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["resourceType"] == "Parameters"
    [p] = body["parameter"]
    assert p["name"] == "return"
    value: dict[str, Any] = p["valueMeta"]
    return value


def _patient(client: FlaskClient, **meta: Any) -> str:
    body: dict[str, Any] = {"resourceType": "Patient", **({"meta": meta} if meta else {})}
    r = client.post("/fhir/Patient", data=json.dumps(body), headers=H)
    assert r.status_code == 201
    return str(r.json["id"])


def _diag(resp: Any) -> str:
    return " ".join(i.get("diagnostics", "") for i in resp.json["issue"])


def test_meta_at_every_level(client: FlaskClient) -> None:
    pid = _patient(client, tag=[{"system": "urn:t", "code": "a"}], profile=["http://p/1"])
    _patient(client, security=[{"system": "urn:s", "code": "R"}])
    client.post("/fhir/Observation", headers=H, data=json.dumps({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "meta": {"tag": [{"system": "urn:t", "code": "obs"}]}}))
    inst = _meta(client.get(f"/fhir/Patient/{pid}/$meta"))
    assert inst["tag"] == [{"system": "urn:t", "code": "a"}] and inst["versionId"] == "1"
    typ = _meta(client.get("/fhir/Patient/$meta"))
    assert typ == {"profile": ["http://p/1"], "tag": [{"system": "urn:t", "code": "a"}],
                   "security": [{"system": "urn:s", "code": "R"}]}
    system = _meta(client.get("/fhir/$meta"))
    assert {t["code"] for t in system["tag"]} == {"a", "obs"}
    assert _meta(client.post("/fhir/Patient/$meta")) == typ


def test_meta_add_and_delete_are_set_operations_with_new_versions(client: FlaskClient) -> None:
    pid = _patient(client, tag=[{"system": "urn:t", "code": "a"}])
    added = _meta(client.post(f"/fhir/Patient/{pid}/$meta-add", headers=H, data=_params(
        {"tag": [{"system": "urn:t", "code": "a", "display": "dup"},
                 {"system": "urn:t", "code": "b"}], "profile": ["http://p/x"]})))
    assert [t["code"] for t in added["tag"]] == ["a", "b"]
    assert added["profile"] == ["http://p/x"] and added["versionId"] == "2"
    # nothing new: no new version
    again = _meta(client.post(f"/fhir/Patient/{pid}/$meta-add", headers=H,
                              data=_params({"tag": [{"system": "urn:t", "code": "b"}]})))
    assert again["versionId"] == "2"
    # the search index follows
    found = client.get("/fhir/Patient?_tag=urn:t|b").json
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [pid]
    deleted = _meta(client.post(f"/fhir/Patient/{pid}/$meta-delete", headers=H, data=_params(
        {"tag": [{"system": "urn:t", "code": "a"}], "profile": ["http://p/x"]})))
    assert deleted["tag"] == [{"system": "urn:t", "code": "b"}] and "profile" not in deleted
    assert deleted["versionId"] == "3"
    assert client.get(f"/fhir/Patient/{pid}").json["meta"]["tag"] == deleted["tag"]


def test_unknown_operation_and_wrong_level(client: FlaskClient) -> None:
    pid = _patient(client)
    r = client.get(f"/fhir/Patient/{pid}/$no-such-op")
    assert r.status_code == 404 and "$no-such-op" in _diag(r)
    r = client.post("/fhir/$meta-add", headers=H, data=_params({}))
    assert r.status_code == 400 and "[Resource]/[id]" in _diag(r)


def test_parameter_errors_name_the_parameter(client: FlaskClient) -> None:
    pid = _patient(client)
    url = f"/fhir/Patient/{pid}/$meta-add"
    r = client.get(url)
    assert r.status_code == 405 and "POST" in _diag(r)
    r = client.post(url, headers=H, data=json.dumps({"resourceType": "Parameters"}))
    assert r.status_code == 400 and r.json["issue"][0]["expression"] == ["meta"]
    r = client.post(url, headers=H, data=json.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueString": "x"}]}))
    assert r.status_code == 400 and "valueMeta" in _diag(r)
    r = client.post(url, headers=H, data=json.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "other", "valueString": "x"}]}))
    assert r.status_code == 400 and "'other'" in _diag(r)
    twice = {"name": "meta", "valueMeta": {"tag": [{"code": "x"}]}}
    r = client.post(url, headers=H, data=json.dumps(
        {"resourceType": "Parameters", "parameter": [twice, twice]}))
    assert r.status_code == 400 and "at most 1" in _diag(r)
    r = client.get("/fhir/Patient/$meta?bogus=1")
    assert r.status_code == 400 and "'bogus'" in _diag(r)
    r = client.post(url, headers={"Content-Type": "text/plain"}, data="meta")
    assert r.status_code == 415
    assert client.get("/fhir/Patient/nobody/$meta").status_code == 404


def test_operation_definitions_are_served_and_listed(client: FlaskClient) -> None:
    r = client.get("/fhir/OperationDefinition/Resource-meta-add")
    assert r.status_code == 200
    assert r.json["url"] == "http://hl7.org/fhir/OperationDefinition/Resource-meta-add"
    cs = client.get("/fhir/metadata").json["rest"][0]
    assert {"name": "meta", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta"
            } in cs["operation"]
    patient = next(r for r in cs["resource"] if r["type"] == "Patient")
    names = {o["name"] for o in patient["operation"]}
    assert {"meta", "meta-add", "meta-delete"} <= names
    for op in cs["operation"] + patient["operation"]:
        def_id = op["definition"].rsplit("/", 1)[-1]
        assert client.get(f"/fhir/OperationDefinition/{def_id}").status_code == 200
