"""Conditional create, update and delete over real HTTP on both backends
(https://hl7.org/fhir/R4/http.html#ccreate, #cond-update, #cdelete), including concurrent
identical conditional writes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.conftest import LiveServer
from tests.integration.helpers import outcome_text, post, put

SYS = "http://example.org/fhir/ids"


def _patient(ident: str | None, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if ident is not None:
        res["identifier"] = [{"system": SYS, "value": ident}]
    return res


def _matches(server: LiveServer, ident: str) -> list[str]:
    r = server.http.get(server.url("Patient"), params={"identifier": f"{SYS}|{ident}",
                                                       "_count": "100"})
    assert r.status_code == 200, r.text
    return sorted(e["resource"]["id"] for e in r.json().get("entry", []))


def _total(server: LiveServer, path: str = "") -> int:
    r = server.http.get(server.url(f"{path}/_history" if path else "_history"),
                        params={"_count": "0"})
    return int(r.json()["total"])


def _create_if_none(server: LiveServer, ident: str, criteria: str | None = None,
                    family: str = "Doe") -> requests.Response:
    crit = criteria if criteria is not None else f"identifier={SYS}|{ident}"
    return post(server, "Patient", _patient(ident, family), **{"If-None-Exist": crit})


# -- conditional create --------------------------------------------------------------------


def test_if_none_exist_zero_one_many(server: LiveServer) -> None:
    """0 matches: 201 created; 1 match: 200 with the existing resource, nothing written;
    2 or more: 412 (https://hl7.org/fhir/R4/http.html#ccreate)."""
    first = _create_if_none(server, "c1")
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    again = _create_if_none(server, "c1", family="Other")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == pid
    assert again.json()["name"][0]["family"] == "Doe"
    assert again.headers["ETag"] == 'W/"1"'
    assert again.headers["Content-Location"] == server.url(f"Patient/{pid}/_history/1")
    assert _total(server, f"Patient/{pid}") == 1
    post(server, "Patient", _patient("c1"))  # an unconditional duplicate
    before = _total(server)
    many = _create_if_none(server, "c1")
    assert many.status_code == 412, many.text
    assert many.json()["resourceType"] == "OperationOutcome"
    assert _total(server) == before


def test_if_none_exist_forms_and_errors(server: LiveServer) -> None:
    """The header takes `[parameters]` (also with a leading `Type?`); several criteria AND
    together; a deleted resource does not match; unknown parameters or none are refused.
    See https://hl7.org/fhir/R4/http.html#ccreate."""
    pid = _create_if_none(server, "c2").json()["id"]
    full = _create_if_none(server, "c2", criteria=f"Patient?identifier={SYS}|c2")
    assert full.status_code == 200 and full.json()["id"] == pid
    both = _create_if_none(server, "c2", criteria=f"identifier={SYS}|c2&family=Doe")
    assert both.status_code == 200 and both.json()["id"] == pid
    other = _create_if_none(server, "c2", criteria=f"identifier={SYS}|c2&family=Else")
    assert other.status_code == 201
    server.http.delete(server.url(f"Patient/{other.json()['id']}"))
    server.http.delete(server.url(f"Patient/{pid}"))
    revived = _create_if_none(server, "c2")
    assert revived.status_code == 201 and revived.json()["id"] not in (pid, other.json()["id"])
    before = _total(server)
    for crit in ("no-such-param=1", f"identifier={SYS}|c2&bogus=2", "Observation?code=x"):
        r = _create_if_none(server, "c2", criteria=crit)
        assert r.status_code == 400, (crit, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert _total(server) == before


def test_concurrent_identical_conditional_creates_make_one(server: LiveServer) -> None:
    """8 threads sending the same conditional create at once: exactly one resource is made,
    the other seven are told about it (200) (https://hl7.org/fhir/R4/http.html#ccreate)."""
    for round_no in range(3):
        ident = f"race-{round_no}"

        def attempt(_: int, ident: str = ident) -> tuple[int, str]:
            with requests.Session() as s:
                r = s.post(server.url("Patient"), json=_patient(ident),
                           headers={"Content-Type": "application/fhir+json",
                                    "If-None-Exist": f"identifier={SYS}|{ident}"})
                return r.status_code, str(r.json().get("id"))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        codes = sorted(c for c, _ in results)
        assert codes == [200] * 7 + [201], results
        assert len({rid for _, rid in results}) == 1, results
        assert _matches(server, ident) == [results[0][1]]
    assert _total(server, "Patient") == 3


def test_criteria_in_the_url_are_if_none_exist(server: LiveServer) -> None:
    """`POST [type]?criteria` (how fhirpy's get_or_create() and Aidbox send it) is the
    conditional create of those criteria: 0 matches 201, 1 match 200 with it and nothing
    written, several 412; unknown parameters 400; parameters that only shape the answer
    (_format, _pretty) are not criteria (https://hl7.org/fhir/R4/http.html#ccreate)."""
    url = f"Patient?identifier={SYS}|q1"
    first = post(server, url, _patient("q1"))
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    assert first.headers["Location"] == server.url(f"Patient/{pid}/_history/1")
    again = post(server, url, _patient("q1", "Other"))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == pid and again.json()["name"][0]["family"] == "Doe"
    assert again.headers["ETag"] == 'W/"1"'
    both = post(server, f"{url}&family=Doe", _patient("q1"))
    assert both.status_code == 200 and both.json()["id"] == pid
    post(server, "Patient", _patient("q1"))  # an unconditional duplicate
    before = _total(server)
    many = post(server, url, _patient("q1"))
    assert many.status_code == 412, many.text
    assert "match 2" in outcome_text(many)
    for bad in ("Patient?no-such-param=1", f"Patient?identifier={SYS}|q1&bogus=2"):
        r = post(server, bad, _patient("q1"))
        assert r.status_code == 400, (bad, r.text)
    assert _total(server) == before
    shaped = post(server, "Patient?_format=json&_pretty=true", _patient("q1"))
    assert shaped.status_code == 201, shaped.text  # no criteria: a plain create
    assert shaped.content.startswith(b"{\n")
    assert len(_matches(server, "q1")) == 3


def test_if_none_exist_header_wins_over_url_criteria(server: LiveServer) -> None:
    """With both, the If-None-Exist header is the condition and the URL's criteria are not
    used (https://hl7.org/fhir/R4/http.html#ccreate)."""
    pid = post(server, "Patient", _patient("h1")).json()["id"]
    r = post(server, f"Patient?identifier={SYS}|nothing-matches", _patient("h1"),
             **{"If-None-Exist": f"identifier={SYS}|h1"})
    assert r.status_code == 200 and r.json()["id"] == pid, r.text
    r = post(server, f"Patient?identifier={SYS}|h1", _patient("h2"),
             **{"If-None-Exist": f"identifier={SYS}|h2"})
    assert r.status_code == 201 and r.json()["id"] != pid, r.text
    assert len(_matches(server, "h1")) == 1


def test_criteria_in_bundle_entry_urls(server: LiveServer) -> None:
    """A POST entry whose url carries criteria (`Patient?identifier=...`) is a conditional
    create in transactions and batches; an entry's ifNoneExist wins over them; in a
    transaction, references to the entry's fullUrl point at the match
    (https://hl7.org/fhir/R4/http.html#trules)."""
    pid = post(server, "Patient", _patient("b1")).json()["id"]
    urn = "urn:uuid:5c5c5c5c-0000-4000-8000-000000000001"
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urn, "resource": _patient("b1"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                      "subject": {"reference": urn}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": _patient("b2"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b2"}},
        {"resource": _patient("b3"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b1",
                     "ifNoneExist": f"identifier={SYS}|b3"}},
    ]}
    r = post(server, "", tx)
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [e["response"]["status"] for e in got] == ["200 OK", "201 Created", "201 Created",
                                                      "201 Created"]
    assert got[0]["resource"]["id"] == pid
    obs = server.http.get(server.url(f"Observation/{got[1]['resource']['id']}")).json()
    assert obs["subject"] == {"reference": f"Patient/{pid}"}
    assert len(_matches(server, "b1")) == 1 and len(_matches(server, "b2")) == 1
    post(server, "Patient", _patient("b2"))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _patient("b1"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b1"}},
        {"resource": _patient("b2"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b2"}},
        {"resource": _patient("b4"),
         "request": {"method": "POST", "url": f"Patient?identifier={SYS}|b4"}},
    ]}
    r = post(server, "", batch)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"].split()[0] for e in r.json()["entry"]] == ["200", "412",
                                                                               "201"]
    before = _total(server)
    tx["entry"] = [tx["entry"][0], {"resource": _patient("b2"), "request": {
        "method": "POST", "url": f"Patient?identifier={SYS}|b2"}}]
    r = post(server, "", tx)
    assert r.status_code == 412, r.text
    assert "Bundle.entry[1]" in outcome_text(r)
    assert _total(server) == before


# -- conditional update --------------------------------------------------------------------


def test_conditional_update_zero_one_many(server: LiveServer) -> None:
    """0 matches: created (201); 1: that one updated (200, same id, next version); several:
    412 (https://hl7.org/fhir/R4/http.html#cond-update)."""
    url = f"Patient?identifier={SYS}|u1"
    created = put(server, url, _patient("u1", "First"))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["Location"] == server.url(f"Patient/{pid}/_history/1")
    updated = put(server, url, _patient("u1", "Second"))
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == pid and updated.headers["ETag"] == 'W/"2"'
    assert server.http.get(server.url(f"Patient/{pid}")).json()["name"][0]["family"] == "Second"
    with_id = put(server, url, {**_patient("u1", "Third"), "id": pid})
    assert with_id.status_code == 200 and with_id.headers["ETag"] == 'W/"3"'
    post(server, "Patient", _patient("u1"))
    before = _total(server)
    many = put(server, url, _patient("u1", "Fourth"))
    assert many.status_code == 412, many.text
    assert _total(server) == before


def test_conditional_update_ids(server: LiveServer) -> None:
    """A body id that differs from the one match: 400; no match and a body id: created with
    that id (update as create); a bad id: 400; the id of a live non-matching resource: 409.
    See https://hl7.org/fhir/R4/http.html#cond-update."""
    pid = post(server, "Patient", _patient("u2")).json()["id"]
    before = _total(server)
    r = put(server, f"Patient?identifier={SYS}|u2", {**_patient("u2"), "id": "someone-else"})
    assert r.status_code == 400, r.text
    assert "someone-else" in outcome_text(r)
    assert _total(server) == before
    assert server.http.get(server.url(f"Patient/{pid}")).json()["meta"]["versionId"] == "1"
    made = put(server, f"Patient?identifier={SYS}|u3", {**_patient("u3"), "id": "client-u3"})
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == server.url("Patient/client-u3/_history/1")
    bad = put(server, f"Patient?identifier={SYS}|u4", {**_patient("u4"), "id": "bad id!"})
    assert bad.status_code == 400
    # no match, but the body's id belongs to a live resource that does not match: not
    # overwritten (409, as R5 spells out); a deleted one is brought back (update as create)
    put(server, "Patient/taken", {**_patient(None, "Unrelated"), "id": "taken"})
    before = _total(server)
    taken = put(server, f"Patient?identifier={SYS}|u6", {**_patient("u6"), "id": "taken"})
    assert taken.status_code == 409, taken.text
    assert _total(server) == before
    assert "identifier" not in server.http.get(server.url("Patient/taken")).json()
    server.http.delete(server.url("Patient/taken"))
    revived = put(server, f"Patient?identifier={SYS}|u6", {**_patient("u6"), "id": "taken"})
    assert revived.status_code == 201 and revived.headers["ETag"] == 'W/"3"'


def test_conditional_update_if_match_and_errors(server: LiveServer) -> None:
    """If-Match applies to the matched resource; unknown parameters or no criteria: refused,
    nothing written; the body must be a Patient (https://hl7.org/fhir/R4/http.html#cond-update)."""
    pid = post(server, "Patient", _patient("u5")).json()["id"]
    url = f"Patient?identifier={SYS}|u5"
    assert put(server, url, _patient("u5", "B"), **{"If-Match": 'W/"1"'}).status_code == 200
    assert put(server, url, _patient("u5", "C"), **{"If-Match": 'W/"1"'}).status_code == 412
    before = _total(server)
    for bad_url in ("Patient?nonsense=1", "Patient"):
        r = put(server, bad_url, _patient("u5", "D"))
        assert r.status_code in (400, 412), (bad_url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    wrong = put(server, url, {"resourceType": "Observation", "status": "final",
                              "code": {"text": "x"}})
    assert wrong.status_code == 400
    assert _total(server) == before
    assert server.http.get(server.url(f"Patient/{pid}")).json()["name"][0]["family"] == "B"


def test_concurrent_conditional_updates_make_one(server: LiveServer) -> None:
    """8 threads conditionally updating a resource that does not exist yet: one creates it,
    the rest update that same resource (https://hl7.org/fhir/R4/http.html#cond-update)."""
    url = server.url(f"Patient?identifier={SYS}|race-u")

    def attempt(i: int) -> int:
        with requests.Session() as s:
            return s.put(url, json=_patient("race-u", f"W{i}"),
                         headers={"Content-Type": "application/fhir+json"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(attempt, range(8)))
    assert codes == [200] * 7 + [201], codes
    (pid,) = _matches(server, "race-u")
    assert _total(server, f"Patient/{pid}") == 8


# -- conditional delete --------------------------------------------------------------------


def test_conditional_delete_zero_one_many(server: LiveServer) -> None:
    """0 matches: nothing to do (204); 1: deleted; several: 412 and none deleted
    (https://hl7.org/fhir/R4/http.html#cdelete)."""
    pid = post(server, "Patient", _patient("d1")).json()["id"]
    none = server.http.delete(server.url("Patient"), params={"identifier": f"{SYS}|nobody"})
    assert none.status_code in (200, 204), none.text
    one = server.http.delete(server.url("Patient"), params={"identifier": f"{SYS}|d1"})
    assert one.status_code in (200, 204), one.text
    assert server.http.get(server.url(f"Patient/{pid}")).status_code == 410
    assert _matches(server, "d1") == []
    twins = [post(server, "Patient", _patient("d2")).json()["id"] for _ in range(2)]
    before = _total(server)
    many = server.http.delete(server.url("Patient"), params={"identifier": f"{SYS}|d2"})
    assert many.status_code == 412, many.text
    assert many.json()["resourceType"] == "OperationOutcome"
    assert _total(server) == before
    assert _matches(server, "d2") == sorted(twins)


def test_conditional_delete_refuses_unclear_criteria(server: LiveServer) -> None:
    """An unknown parameter (a typo) or no criteria must not be read as 'everything': refused,
    nothing deleted (https://hl7.org/fhir/R4/http.html#cdelete)."""
    pid = post(server, "Patient", _patient("d3")).json()["id"]
    before = _total(server)
    for params in ({"identifer": f"{SYS}|d3"}, {}, {"_format": "json"}):
        r = server.http.delete(server.url("Patient"), params=params)
        assert r.status_code in (400, 412), (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert _total(server) == before
    assert server.http.get(server.url(f"Patient/{pid}")).status_code == 200


def test_conditional_delete_if_match(server: LiveServer) -> None:
    """If-Match on a conditional delete is checked against the matched resource (#concurrency).
    See https://hl7.org/fhir/R4/http.html#concurrency."""
    pid = post(server, "Patient", _patient("d4")).json()["id"]
    put(server, f"Patient/{pid}", {**_patient("d4", "v2"), "id": pid})
    params = {"identifier": f"{SYS}|d4"}
    stale = server.http.delete(server.url("Patient"), params=params,
                               headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    assert server.http.get(server.url(f"Patient/{pid}")).status_code == 200
    ok = server.http.delete(server.url("Patient"), params=params, headers={"If-Match": 'W/"2"'})
    assert ok.status_code in (200, 204), ok.text
    assert server.http.get(server.url(f"Patient/{pid}")).status_code == 410


def test_plain_delete_of_unknown_id_is_like_no_match(server: LiveServer) -> None:
    """DELETE [type]/[id] of an id that never existed: 204 and nothing recorded, as for a
    conditional delete matching nothing ("or if the resource does not exist at all", #delete);
    with If-Match there is no version to match: 412 (https://hl7.org/fhir/R4/http.html#delete)."""
    r = server.http.delete(server.url("Patient/never-was"))
    assert r.status_code == 204, r.text
    assert not r.content
    assert server.http.get(server.url("Patient/never-was")).status_code == 404
    assert _total(server) == 0
    stale = server.http.delete(server.url("Patient/never-was"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    oo = server.http.delete(server.url("Patient/never-was"),
                            headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 200 and oo.json()["resourceType"] == "OperationOutcome"
