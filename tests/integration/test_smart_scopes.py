"""Scopes enforced on every interaction, and no other patient's data through any path: a
patient/ token for Ann (Patient/pa) must never see Bob's (Patient/pb) resources, through reads,
searches, _include, _revinclude, chains, _has, history, paging or Bundle.total
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.integration.smart_support import SmartServer, bearer, token_for

FHIR_JSON = "application/fhir+json"


def ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if mode is None or e.get("search", {}).get("mode") == mode}


def get(srv: SmartServer, path: str, tok: dict[str, Any]) -> requests.Response:
    return requests.get(srv.url(path), headers=bearer(tok))


def ann_token(world: SmartServer, scope: str = "launch/patient patient/*.rs") -> dict[str, Any]:
    return token_for(world, scope, "doc", patient="pa")


def test_patient_scope_reads_only_its_compartment(world: SmartServer) -> None:
    tok = ann_token(world)
    assert tok["patient"] == "pa"
    assert get(world, "Patient/pa", tok).status_code == 200
    assert get(world, "Observation/oa1", tok).status_code == 200
    refused = get(world, "Observation/ob1", tok)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert get(world, "Patient/pb", tok).status_code == 403
    assert get(world, "Observation/ob1/_history/1", tok).status_code == 403  # vread
    # not patient data: readable with a patient/ scope
    assert get(world, "Practitioner/dr1", tok).status_code == 200
    # an id that does not exist is still a 404
    assert get(world, "Observation/nope", tok).status_code == 404


def test_search_total_and_paging_stay_in_the_compartment(world: SmartServer) -> None:
    tok = ann_token(world)
    bundle = get(world, "Observation?_total=accurate", tok).json()
    assert ids(bundle) == {"Observation/oa1", "Observation/oa2", "Observation/oa3"}
    assert bundle["total"] == 3
    seen: set[str] = set()
    page = get(world, "Observation?_count=1&_total=accurate", tok).json()
    assert page["total"] == 3
    while True:
        seen |= ids(page)
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = requests.get(nxt[0], headers=bearer(tok)).json()
    assert seen == {"Observation/oa1", "Observation/oa2", "Observation/oa3"}
    # the same search by someone else's criteria finds nothing of Bob's
    assert ids(get(world, "Observation?patient=pb", tok).json()) == set()
    assert get(world, "Observation?patient=pb&_summary=count", tok).json()["total"] == 0


def test_no_leak_through_include_revinclude_chain_has(world: SmartServer) -> None:
    tok = ann_token(world)
    inc = get(world, "Observation?_id=oa3&_include=Observation:focus", tok).json()
    assert ids(inc, "include") == set(), "Bob's Patient came in through _include"
    inc_own = get(world, "Observation?_id=oa1&_include=Observation:subject", tok).json()
    assert ids(inc_own, "include") == {"Patient/pa"}
    rev = get(world, "Practitioner?_id=dr1&_revinclude=Observation:performer", tok).json()
    assert ids(rev, "match") == {"Practitioner/dr1"}
    assert ids(rev, "include") == set(), "Bob's Observation came in through _revinclude"
    # a chain must not test Bob's name (oa3.focus points at him)
    chain = get(world, "Observation?focus:Patient.name=Beta", tok).json()
    assert ids(chain) == set()
    assert chain.get("total", 0) == 0
    # _has must not look at Bob's observations (ob1 has the code B-ONLY and dr1 as performer)
    has = get(world, "Practitioner?_has:Observation:performer:code=B-ONLY", tok).json()
    assert ids(has) == set()
    # a system search over several types, and a compartment search of Bob
    system = get(world, "?_type=Observation,Encounter,Patient", tok).json()
    assert ids(system) == {"Observation/oa1", "Observation/oa2", "Observation/oa3",
                           "Encounter/ea", "Patient/pa"}
    assert ids(get(world, "Patient/pb/Observation", tok).json()) == set()


def test_no_leak_through_history(world: SmartServer) -> None:
    tok = ann_token(world)
    world.seed({**get(world, "Observation/oa1", tok).json(), "status": "amended"})
    typed = get(world, "Observation/_history", tok).json()
    assert {e["fullUrl"].rsplit("/", 1)[1] for e in typed["entry"]} == {"oa1", "oa2", "oa3"}
    assert typed["total"] == 4  # oa1 has two versions
    system = get(world, "_history", tok).json()
    urls = {e["fullUrl"].split("/fhir/")[1] for e in system["entry"]}
    assert not any(u.endswith(("/pb", "/ob1", "/ob2", "/eb")) for u in urls), urls
    assert "Observation/oa1" in urls and "Practitioner/dr1" in urls
    assert get(world, "Observation/ob1/_history", tok).status_code == 403
    assert get(world, "Observation/oa1/_history", tok).json()["total"] == 2


def test_type_level_scope_rules(world: SmartServer) -> None:
    only_obs = ann_token(world, "launch/patient patient/Observation.rs")
    assert get(world, "Observation", only_obs).status_code == 200
    refused = get(world, "Condition", only_obs)
    assert refused.status_code == 403 and "Condition" in refused.text
    assert get(world, "Encounter/ea", only_obs).status_code == 403
    # with no Patient scope, an included Patient is left out rather than refused
    inc = get(world, "Observation?_id=oa1&_include=Observation:subject", only_obs).json()
    assert ids(inc, "include") == set()
    # read without search, and search without read (v2 letters)
    read_only = ann_token(world, "launch/patient patient/Observation.r")
    assert get(world, "Observation/oa1", read_only).status_code == 200
    assert get(world, "Observation", read_only).status_code == 403
    search_only = ann_token(world, "launch/patient patient/Observation.s")
    assert get(world, "Observation", search_only).status_code == 200
    assert get(world, "Observation/oa1", search_only).status_code == 403
    # read scopes do not write
    new = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/pa"}}
    resp = requests.post(world.url("Observation"), data=json.dumps(new),
                         headers={**bearer(only_obs), "Content-Type": FHIR_JSON})
    assert resp.status_code == 403


def test_v1_scopes(world: SmartServer) -> None:
    tok = ann_token(world, "launch/patient patient/*.read")
    assert get(world, "Observation/oa1", tok).status_code == 200
    assert ids(get(world, "Encounter", tok).json()) == {"Encounter/ea"}
    resp = requests.delete(world.url("Observation/oa1"), headers=bearer(tok))
    assert resp.status_code == 403
    user = token_for(world, "user/Observation.read user/Observation.write", "doc")
    assert ids(get(world, "Observation?code=B-ONLY", user).json()) == {"Observation/ob1"}
    assert get(world, "Patient/pa", user).status_code == 403
    assert requests.delete(world.url("Observation/ob2"), headers=bearer(user)).status_code \
        == 204


def test_granular_category_scope(world: SmartServer) -> None:
    cat = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    tok = ann_token(world, f"launch/patient patient/Observation.rs?category={cat}")
    assert ids(get(world, "Observation", tok).json()) == {"Observation/oa1"}
    assert get(world, "Observation/oa1", tok).status_code == 200
    assert get(world, "Observation/oa2", tok).status_code == 403  # laboratory
    user = token_for(world, f"user/Observation.rs?category={cat}", "doc")
    assert ids(get(world, "Observation", user).json()) == {"Observation/oa1", "Observation/ob1"}


def test_writes_stay_in_the_compartment(world: SmartServer) -> None:
    tok = ann_token(world, "launch/patient patient/*.cruds")
    h = {**bearer(tok), "Content-Type": FHIR_JSON}
    mine = {"resourceType": "Observation", "status": "final", "code": {"text": "mine"},
            "subject": {"reference": "Patient/pa"}}
    created = requests.post(world.url("Observation"), data=json.dumps(mine), headers=h)
    assert created.status_code == 201
    bobs = {**mine, "subject": {"reference": "Patient/pb"}, "code": {"text": "for Bob"}}
    refused = requests.post(world.url("Observation"), data=json.dumps(bobs), headers=h)
    assert refused.status_code == 403
    # moving Ann's observation to Bob, or overwriting Bob's, is refused
    oa1 = get(world, "Observation/oa1", tok).json()
    moved = requests.put(world.url("Observation/oa1"),
                         data=json.dumps({**oa1, "subject": {"reference": "Patient/pb"}}),
                         headers=h)
    assert moved.status_code == 403
    ob2 = {**mine, "id": "ob2"}
    assert requests.put(world.url("Observation/ob2"), data=json.dumps(ob2),
                        headers=h).status_code == 403
    assert requests.delete(world.url("Observation/ob1"), headers=h).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    assert requests.patch(world.url("Observation/ob1"), data=json.dumps(patch),
                          headers={**h, "Content-Type": "application/json-patch+json"}
                          ).status_code == 403
    # nothing of Bob's changed, nothing was created for him
    admin = token_for(world, "user/*.rs", "doc")
    assert get(world, "Observation/ob1", admin).json()["meta"]["versionId"] == "1"
    assert get(world, "Observation/oa1", admin).json()["subject"]["reference"] == "Patient/pa"
    assert ids(get(world, "Observation?code:text=for Bob", admin).json()) == set()
    # a conditional create only matches among Ann's resources
    cond = requests.post(world.url("Observation"), data=json.dumps(mine),
                         headers={**h, "If-None-Exist": "code=B-ONLY"})
    assert cond.status_code == 201


def test_transaction_and_batch_entries(world: SmartServer) -> None:
    tok = ann_token(world, "launch/patient patient/*.cruds")
    h = {**bearer(tok), "Content-Type": FHIR_JSON}

    def entry(patient: str, text: str) -> dict[str, Any]:
        return {"request": {"method": "POST", "url": "Observation"},
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"text": text},
                             "subject": {"reference": f"Patient/{patient}"}}}

    tx = {"resourceType": "Bundle", "type": "transaction",
          "entry": [entry("pa", "tx-ann"), entry("pb", "tx-bob")]}
    resp = requests.post(world.url(), data=json.dumps(tx), headers=h)
    assert resp.status_code == 403, resp.text
    admin = token_for(world, "user/*.rs", "doc")
    assert ids(get(world, "Observation?code:text=tx-ann", admin).json()) == set()
    # a transaction entry on a type without a scope fails it before anything runs
    only_obs = ann_token(world, "launch/patient patient/Observation.cruds")
    tx2 = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("pa", "tx2"),
        {"request": {"method": "GET", "url": "Condition"}}]}
    resp = requests.post(world.url(), data=json.dumps(tx2),
                         headers={**bearer(only_obs), "Content-Type": FHIR_JSON})
    assert resp.status_code == 403 and "Bundle.entry[1]" in resp.text
    # a batch answers each entry on its own
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        entry("pa", "batch-ann"), entry("pb", "batch-bob"),
        {"request": {"method": "GET", "url": "Observation/ob1"}},
        {"request": {"method": "GET", "url": "Observation/oa1"}}]}
    out = requests.post(world.url(), data=json.dumps(batch), headers=h).json()
    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "403", "403", "200"]


def test_operations_need_what_they_declare(world: SmartServer) -> None:
    tok = ann_token(world, "launch/patient patient/Observation.rs")
    assert get(world, "Observation/oa1/$meta", tok).status_code == 200
    assert get(world, "Observation/ob1/$meta", tok).status_code == 403
    assert get(world, "Encounter/ea/$meta", tok).status_code == 403
    h = {**bearer(tok), "Content-Type": FHIR_JSON}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"tag": [{"system": "http://x", "code": "y"}]}}]}
    resp = requests.post(world.url("Observation/oa1/$meta-add"), data=json.dumps(params),
                         headers=h)
    assert resp.status_code == 403  # needs Observation.u


def test_system_scope_for_a_patient_user(world: SmartServer) -> None:
    """A patient who signs in with user/ scopes sees only their own record."""
    tok = token_for(world, "user/*.rs openid fhirUser", "ann")
    assert ids(get(world, "Observation", tok).json()) == {
        "Observation/oa1", "Observation/oa2", "Observation/oa3"}
    assert get(world, "Patient/pb", tok).status_code == 403
