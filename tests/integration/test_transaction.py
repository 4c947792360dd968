"""transaction over real HTTP on both backends (https://hl7.org/fhir/R4/http.html#transaction):
Synthea and the official example, atomicity, processing order, reference rewriting, conditional
entries, the transaction-response Bundle, and refusal of malformed Bundles."""

from __future__ import annotations

import copy
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.conftest import LiveServer
from tests.integration.helpers import FHIR_JSON, example, outcome_text, post, put, synthea_files

SYS = "http://example.org/fhir/ids"
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _transaction(entries: list[Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _send(server: LiveServer, bundle: Any, **headers: str) -> requests.Response:
    return post(server, "", bundle, **headers)


def _patient(family: str = "Doe", ident: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if ident is not None:
        res["identifier"] = [{"system": SYS, "value": ident}]
    return res


def _history_total(server: LiveServer, path: str = "") -> int:
    url = server.url(f"{path}/_history" if path else "_history")
    r = server.http.get(url, params={"_count": "0"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


def _ref_map(value: Any, mapping: dict[str, str]) -> Any:
    """`value` with every Reference.reference replaced through `mapping` (as a server must)."""
    if isinstance(value, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str)
                    else _ref_map(v, mapping)) for k, v in value.items()}
    if isinstance(value, list):
        return [_ref_map(v, mapping) for v in value]
    return value


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        out = [v for k, v in value.items() if k == "reference" and isinstance(v, str)]
        for v in value.values():
            out.extend(_references(v))
        return out
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _all_versions(server: LiveServer) -> list[dict[str, Any]]:
    """Every entry of the system history, following next links."""
    out: list[dict[str, Any]] = []
    url: str | None = server.url("_history?_count=1000")
    while url:
        page = server.http.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        out.extend(body.get("entry", []))
        url = next((lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"), None)
    return out


# -- Synthea ---------------------------------------------------------------------------------


def test_all_synthea_bundles_load_with_references_rewritten(server: LiveServer) -> None:
    """Each of the 28 Synthea patient transactions commits; every urn:uuid becomes Type/id.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    files = synthea_files()
    assert len(files) == 28
    expected: dict[str, dict[str, Any]] = {}  # "Type/id" -> the resource as it must be stored
    for path in files:
        bundle = json.loads(path.read_text())
        r = _send(server, bundle)
        assert r.status_code == 200, (path.name, r.text[:500])
        assert r.headers["Content-Type"].startswith("application/fhir+json")
        out = r.json()
        assert out["resourceType"] == "Bundle" and out["type"] == "transaction-response"
        assert len(out["entry"]) == len(bundle["entry"])
        mapping: dict[str, str] = {}
        for sent, got in zip(bundle["entry"], out["entry"], strict=True):
            rtype = sent["resource"]["resourceType"]
            assert _status(got) == 201, got["response"]
            location = got["response"]["location"]
            m = re.fullmatch(rf"{re.escape(server.base)}/{rtype}/([A-Za-z0-9\-.]+)/_history/1",
                             location)
            assert m, location
            assert got["response"]["etag"] == 'W/"1"'
            assert INSTANT.match(got["response"]["lastModified"])
            mapping[sent["fullUrl"]] = f"{rtype}/{m.group(1)}"
        for sent in bundle["entry"]:
            ref = mapping[sent["fullUrl"]]
            expected[ref] = _ref_map(sent["resource"], mapping)
        # every entry is readable by the location it was given: spot-check a spread per bundle
        refs = [mapping[e["fullUrl"]] for e in bundle["entry"]]
        for ref in refs[:: max(1, len(refs) // 6)]:
            got_read = server.http.get(server.url(ref))
            assert got_read.status_code == 200, ref
            assert got_read.json()["id"] == ref.split("/")[1]
    # all stored versions, fetched in bulk: exactly what was sent, references rewritten
    created = set(expected)
    versions = _all_versions(server)
    assert len(versions) == len(expected)
    for entry in versions:
        res = entry["resource"]
        ref = f"{res['resourceType']}/{res['id']}"
        want = expected.pop(ref)
        assert "urn:uuid:" not in json.dumps(res), ref
        for target in _references(res):
            assert target.startswith("#") or target in created, (ref, target)
        assert res["meta"]["versionId"] == "1"
        strip = ("id", "meta")
        assert {k: v for k, v in res.items() if k not in strip} == \
            {k: v for k, v in want.items() if k not in strip}, ref
    assert not expected


# -- the official example ----------------------------------------------------------------------


def _official_adapted() -> dict[str, Any]:
    """Bundle-bundle-transaction.json minus its `ValueSet/$lookup` operation entry (operations
    are not part of the REST interactions tested here)."""
    bundle = example("Bundle-bundle-transaction")
    bundle["entry"] = [e for e in bundle["entry"] if "$" not in e["request"]["url"]]
    return bundle


def _prepare_official(server: LiveServer) -> None:
    """What the example assumes exists: Patient/123a at version 2, Patient/234, a Patient with
    identifier 123456 and Patient/12334 at version 4."""
    for pid, versions in (("123a", 2), ("234", 1), ("12334", 4)):
        for i in range(versions):
            r = put(server, f"Patient/{pid}",
                    {"resourceType": "Patient", "id": pid, "name": [{"family": f"Old{i}"}]})
            assert r.status_code in (200, 201), r.text
    r = post(server, "Patient", {"resourceType": "Patient", "identifier": [{"value": "123456"}]})
    assert r.status_code == 201


def test_official_transaction_example(server: LiveServer) -> None:
    """The spec's example: create, conditional create, update, conditional update, If-Match
    update, delete, conditional delete, search and conditional read, in one transaction.
    See https://hl7.org/fhir/R4/bundle-transaction.json.html."""
    _prepare_official(server)
    to_delete = post(server, "Patient", {"resourceType": "Patient"})  # noise: must survive
    before = _history_total(server)
    bundle = _official_adapted()
    r = _send(server, bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    got = out["entry"]
    assert [_status(e) for e in got] == [201, 201, 201, 201, 200, 204, 204, 200, 304]
    base = server.base
    assert re.fullmatch(rf"{base}/Patient/[^/]+/_history/1", got[0]["response"]["location"])
    assert got[2]["response"]["location"] == f"{base}/Patient/123/_history/1"
    assert got[4]["response"]["location"] == f"{base}/Patient/123a/_history/3"
    assert got[4]["response"]["etag"] == 'W/"3"'
    for e in got[:5]:
        assert e["resource"]["resourceType"] == "Patient"
        assert e["resource"]["name"][0]["family"] == "Chalmers"
        assert INSTANT.match(e["response"]["lastModified"])
    # GET entries run last: the search sees all five Chalmers patients written above
    search = got[7]["resource"]
    assert search["resourceType"] == "Bundle" and search["type"] == "searchset"
    names = sorted(x["resource"]["id"] for x in search["entry"])
    assert len(names) == 5 and {"123", "123a"} <= set(names)
    # deletes happened
    assert server.http.get(server.url("Patient/234")).status_code == 410
    found = server.http.get(server.url("Patient"), params={"identifier": "123456"}).json()
    assert not found.get("entry")
    assert server.http.get(server.url(f"Patient/{to_delete.json()['id']}")).status_code == 200
    # five writes plus two deletions
    assert _history_total(server) == before + 7
    # the conditional update created a Patient carrying the identifier of its URL
    cond = server.http.get(server.url("Patient"),
                           params={"identifier": "http:/example.org/fhir/ids|456456"})
    assert [e["resource"]["id"] for e in cond.json()["entry"]] == [got[3]["resource"]["id"]]


def test_official_example_second_run_fails_whole_on_if_match(server: LiveServer) -> None:
    """Run again, Patient/123a is at version 3: `ifMatch: W/"2"` fails, and with it every
    other entry (conditional create/update that now match, deletes already done).
    See https://hl7.org/fhir/R4/http.html#transaction."""
    _prepare_official(server)
    assert _send(server, _official_adapted()).status_code == 200
    before = _history_total(server)
    snapshot = server.http.get(server.url("Patient/123")).json()
    r = _send(server, _official_adapted())
    assert r.status_code == 412, r.text
    assert "Bundle.entry[4]" in outcome_text(r)
    assert _history_total(server) == before
    assert server.http.get(server.url("Patient/123")).json() == snapshot


def test_official_example_unchanged_is_refused_cleanly(server: LiveServer) -> None:
    """As published, on an empty server: refused with an OperationOutcome, nothing written.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    r = _send(server, example("Bundle-bundle-transaction"))
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert _history_total(server) == 0


# -- atomicity -------------------------------------------------------------------------------


def _atomic_prefix(
    server: LiveServer, tag: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Entries that write (create, update, delete, a reference between two new resources)
    before a failing last entry; and the state they must not change."""
    keep = post(server, "Patient", _patient("Keep", f"keep-{tag}")).json()
    doomed = post(server, "Patient", _patient("Doomed")).json()
    entries: list[dict[str, Any]] = [
        {"fullUrl": "urn:uuid:0c3b1d6e-7a10-4b7e-9c41-0000000000a1",
         "resource": _patient("New", f"new-{tag}"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:0c3b1d6e-7a10-4b7e-9c41-0000000000a1"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**_patient("Put"), "id": f"atomic-{tag}"},
         "request": {"method": "PUT", "url": f"Patient/atomic-{tag}"}},
        {"resource": {**keep, "name": [{"family": "Changed"}]},
         "request": {"method": "PUT", "url": f"Patient/{keep['id']}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    ]
    return entries, {"keep": keep, "doomed": doomed}


def _failing_last(server: LiveServer, kind: str) -> tuple[dict[str, Any], int]:
    if kind == "invalid-resource":
        return {"resource": {"resourceType": "Patient", "gender": "sometimes"},
                "request": {"method": "POST", "url": "Patient"}}, 400
    if kind == "unknown-element":
        return {"resource": {"resourceType": "Patient", "colour": "blue"},
                "request": {"method": "POST", "url": "Patient"}}, 400
    if kind == "if-match":
        other = post(server, "Patient", _patient("Other")).json()
        put(server, f"Patient/{other['id']}", other)
        return {"resource": other,
                "request": {"method": "PUT", "url": f"Patient/{other['id']}",
                            "ifMatch": 'W/"1"'}}, 412
    if kind == "conditional-412":
        for _ in range(2):
            post(server, "Patient", _patient("Twin", "twin"))
        return {"resource": _patient("Third", "twin"),
                "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|twin"}}, 412
    if kind == "if-none-exist-412":
        for _ in range(2):
            post(server, "Patient", _patient("Twin", "twin2"))
        return {"resource": _patient("Third", "twin2"),
                "request": {"method": "POST", "url": "Patient",
                            "ifNoneExist": f"identifier={SYS}|twin2"}}, 412
    if kind == "get-missing":
        return {"request": {"method": "GET", "url": "Patient/never-there"}}, 404
    if kind == "delete-unknown-type":
        return {"request": {"method": "DELETE", "url": "NoSuchType/1"}}, 404
    if kind == "conditional-put-id-taken":
        put(server, "Patient/taken", {**_patient("Taken"), "id": "taken"})
        return {"resource": {**_patient("X", "not-matching"), "id": "taken"},
                "request": {"method": "PUT",
                            "url": f"Patient?identifier={SYS}|not-matching"}}, 409
    if kind == "id-mismatch":
        return {"resource": {**_patient("X"), "id": "other"},
                "request": {"method": "PUT", "url": "Patient/not-other"}}, 400
    raise AssertionError(kind)


ATOMIC_FAILURES = ["invalid-resource", "unknown-element", "if-match", "conditional-412",
                   "if-none-exist-412", "get-missing", "delete-unknown-type", "id-mismatch",
                   "conditional-put-id-taken"]


def test_failing_last_entry_leaves_nothing_written(server: LiveServer) -> None:
    """One failing entry fails the whole transaction: no version is written, nothing changes
    (https://hl7.org/fhir/R4/http.html#transaction)."""
    for kind in ATOMIC_FAILURES:
        entries, state = _atomic_prefix(server, kind)
        last, status = _failing_last(server, kind)
        entries.append(last)
        before = _history_total(server)
        r = _send(server, _transaction(entries))
        assert r.status_code == status, (kind, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", kind
        assert f"Bundle.entry[{len(entries) - 1}]" in outcome_text(r), kind
        assert _history_total(server) == before, kind
        assert server.http.get(server.url(f"Patient/atomic-{kind}")).status_code == 404, kind
        keep = server.http.get(server.url(f"Patient/{state['keep']['id']}"))
        assert keep.json() == state["keep"], kind
        doomed = server.http.get(server.url(f"Patient/{state['doomed']['id']}"))
        assert doomed.status_code == 200, kind
    assert _history_total(server, "Observation") == 0


# -- processing order and GET entries ----------------------------------------------------------


def test_processing_order_delete_post_put_get(server: LiveServer) -> None:
    """Entries run DELETE, POST, PUT, GET whatever their order in the Bundle; answers keep the
    Bundle's order (https://hl7.org/fhir/R4/http.html#trules)."""
    put(server, "Patient/ord-new", {**_patient("Before"), "id": "ord-new"})
    put(server, "Patient/ord-old", {**_patient("Old", "ord-old"), "id": "ord-old"})
    entries = [
        {"request": {"method": "GET", "url": "Patient/ord-new"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={SYS}|ord-old"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={SYS}|ord-post"}},
        {"resource": {**_patient("After"), "id": "ord-new"},
         "request": {"method": "PUT", "url": "Patient/ord-new"}},
        {"request": {"method": "DELETE", "url": "Patient/ord-old"}},
        {"resource": _patient("Posted", "ord-post"),
         "request": {"method": "POST", "url": "Patient"}},
    ]
    r = _send(server, _transaction(entries))
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [200, 200, 200, 200, 204, 201]
    assert got[0]["resource"]["name"][0]["family"] == "After"  # the PUT ran before the GET
    assert got[0]["resource"]["meta"]["versionId"] == "2"
    assert not got[1]["resource"].get("entry")  # the DELETE ran before the search
    posted = got[2]["resource"]["entry"]
    assert [e["resource"]["id"] for e in posted] == [got[5]["resource"]["id"]]
    # newest first in history: PUT after POST after DELETE
    hist = server.http.get(server.url("_history"), params={"_count": "3"}).json()["entry"]
    assert [e["request"]["method"] for e in hist] == ["PUT", "POST", "DELETE"]
    stamps = [e["response"]["lastModified"] for e in hist]
    assert stamps == sorted(stamps, reverse=True)


def test_get_entries_see_the_transaction_and_conditional_read(server: LiveServer) -> None:
    """A GET inside the transaction reads what earlier-processed entries wrote; If-None-Match
    on a GET entry gives 304 (https://hl7.org/fhir/R4/http.html#trules)."""
    put(server, "Patient/cr-1", {**_patient("A"), "id": "cr-1"})
    entries = [
        {"request": {"method": "GET", "url": "Patient/cr-1", "ifNoneMatch": 'W/"1"'}},
        {"request": {"method": "GET", "url": "Patient/cr-2"}},
        {"resource": {**_patient("B"), "id": "cr-2"},
         "request": {"method": "PUT", "url": "Patient/cr-2"}},
    ]
    r = _send(server, _transaction(entries))
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [304, 200, 201]
    assert got[1]["resource"]["id"] == "cr-2"


def test_vread_and_history_entries_see_the_transaction(server: LiveServer, db_url: str) -> None:
    """GET entries for a version and for history read the transaction's own writes too.
    See https://hl7.org/fhir/R4/http.html#trules."""
    entries = [
        {"resource": {**_patient("V"), "id": "vr-1"},
         "request": {"method": "PUT", "url": "Patient/vr-1"}},
        {"request": {"method": "GET", "url": "Patient/vr-1/_history/1"}},
        {"request": {"method": "GET", "url": "Patient/vr-1/_history"}},
    ]
    r = _send(server, _transaction(entries))
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [201, 200, 200]
    assert got[1]["resource"]["meta"]["versionId"] == "1"
    assert got[2]["resource"]["total"] == 1


# -- references --------------------------------------------------------------------------------


def test_urn_uuid_and_absolute_full_urls_are_rewritten(server: LiveServer) -> None:
    """References to an entry's fullUrl (urn:uuid or absolute) become Type/id, in nested
    elements and extensions too (https://hl7.org/fhir/R4/bundle.html#references)."""
    pat_url = "urn:uuid:7f0b5a84-0a53-4b2e-8d6e-0000000000b1"
    put_url = "http://other.example/fhir/Practitioner/pr-1"
    entries = [
        {"fullUrl": "urn:uuid:7f0b5a84-0a53-4b2e-8d6e-0000000000c1",
         "resource": {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"},
                      "subject": {"reference": pat_url},
                      "participant": [{"individual": {"reference": put_url}}],
                      "extension": [{"url": "http://example.org/x",
                                     "valueReference": {"reference": pat_url}}]},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": pat_url, "resource": _patient("Ref"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": put_url, "resource": {"resourceType": "Practitioner", "id": "pr-1"},
         "request": {"method": "PUT", "url": "Practitioner/pr-1"}},
    ]
    r = _send(server, _transaction(entries))
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    pid = got[1]["resource"]["id"]
    enc = server.http.get(server.url(f"Encounter/{got[0]['resource']['id']}")).json()
    assert enc["subject"]["reference"] == f"Patient/{pid}"
    assert enc["extension"][0]["valueReference"]["reference"] == f"Patient/{pid}"
    assert enc["participant"][0]["individual"]["reference"] == "Practitioner/pr-1"
    assert got[0]["fullUrl"] == server.url(f"Encounter/{enc['id']}")
    assert server.http.get(server.url(enc["subject"]["reference"])).status_code == 200


def test_conditional_references_are_resolved(server: LiveServer) -> None:
    """`Patient?identifier=sys|x` in a reference becomes the one match; none or several fail
    the transaction (https://hl7.org/fhir/R4/http.html#trules)."""
    target = post(server, "Patient", _patient("Target", "cref")).json()
    for _ in range(2):
        post(server, "Patient", _patient("Dup", "cref-dup"))

    def obs(ref: str) -> dict[str, Any]:
        return _transaction([
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                          "subject": {"reference": ref}},
             "request": {"method": "POST", "url": "Observation"}}])

    r = _send(server, obs(f"Patient?identifier={SYS}|cref"))
    assert r.status_code == 200, r.text
    oid = r.json()["entry"][0]["resource"]["id"]
    stored = server.http.get(server.url(f"Observation/{oid}")).json()
    assert stored["subject"]["reference"] == f"Patient/{target['id']}"
    before = _history_total(server)
    for ref, status in ((f"Patient?identifier={SYS}|nobody", (400, 404, 412)),
                        (f"Patient?identifier={SYS}|cref-dup", (412,))):
        bad = _send(server, obs(ref))
        assert bad.status_code in status, bad.text
        assert "Bundle.entry[0]" in outcome_text(bad)
    assert _history_total(server) == before


# -- conditional entries -------------------------------------------------------------------------


def test_if_none_exist_inside_a_transaction(server: LiveServer) -> None:
    """ifNoneExist: no match creates (201); one match answers 200 with it and references to the
    entry's fullUrl point to it; several fail the transaction with 412.
    See https://hl7.org/fhir/R4/http.html#ccreate."""
    urn = "urn:uuid:5d8d3f37-54a8-4d6b-a1e3-0000000000d1"

    def bundle(ident: str) -> dict[str, Any]:
        return _transaction([
            {"fullUrl": urn, "resource": _patient("Cond", ident),
             "request": {"method": "POST", "url": "Patient",
                         "ifNoneExist": f"identifier={SYS}|{ident}"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "c"},
                          "subject": {"reference": urn}},
             "request": {"method": "POST", "url": "Observation"}},
        ])

    first = _send(server, bundle("ine"))
    assert first.status_code == 200, first.text
    e0 = first.json()["entry"][0]
    assert _status(e0) == 201
    pid = e0["resource"]["id"]
    second = _send(server, bundle("ine"))
    assert second.status_code == 200, second.text
    s0, s1 = second.json()["entry"]
    assert _status(s0) == 200
    assert s0["response"]["location"] == server.url(f"Patient/{pid}/_history/1")
    assert s0["response"]["etag"] == 'W/"1"'
    obs = server.http.get(server.url(f"Observation/{s1['resource']['id']}")).json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert _history_total(server, f"Patient/{pid}") == 1
    post(server, "Patient", _patient("Cond", "ine"))
    before = _history_total(server)
    third = _send(server, bundle("ine"))
    assert third.status_code == 412, third.text
    assert _history_total(server) == before


def test_concurrent_transactions_with_the_same_if_none_exist(server: LiveServer) -> None:
    """Six transactions at once, each creating `identifier=sys|tx-race` if none exists and an
    Observation about it: one Patient is made and every Observation points at it.
    See https://hl7.org/fhir/R4/http.html#ccreate."""
    urn = "urn:uuid:9b0e4c1e-0000-4000-8000-000000000001"

    def send(i: int) -> requests.Response:
        bundle = _transaction([
            {"fullUrl": urn, "resource": _patient("Race", "tx-race"),
             "request": {"method": "POST", "url": "Patient",
                         "ifNoneExist": f"identifier={SYS}|tx-race"}},
            {"resource": {"resourceType": "Observation", "status": "final",
                          "code": {"text": f"o{i}"}, "subject": {"reference": urn}},
             "request": {"method": "POST", "url": "Observation"}}])
        with requests.Session() as http:
            return http.post(server.base, data=json.dumps(bundle), headers=FHIR_JSON)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    firsts = [a.json()["entry"][0] for a in answers]
    assert sorted(_status(e) for e in firsts) == [200] * 5 + [201]
    (pid,) = {e["resource"]["id"] for e in firsts}
    assert _history_total(server, "Patient") == 1
    subjects = {server.http.get(server.url(f"Observation/{a.json()['entry'][1]['resource']['id']}"))
                .json()["subject"]["reference"] for a in answers}
    assert subjects == {f"Patient/{pid}"}


def test_conditional_update_and_delete_entries(server: LiveServer) -> None:
    """PUT/DELETE [type]?criteria entries: none, one and several matches.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    one = post(server, "Patient", _patient("One", "cu-1")).json()
    r = _send(server, _transaction([
        {"resource": _patient("OneUpdated", "cu-1"),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|cu-1"}},
        {"resource": _patient("Fresh", "cu-2"),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|cu-2"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|cu-none"}},
    ]))
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [200, 201, 204]
    assert got[0]["resource"]["id"] == one["id"]
    assert got[0]["response"]["etag"] == 'W/"2"'
    r = _send(server, _transaction([
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|cu-2"}}]))
    assert r.status_code == 200 and _status(r.json()["entry"][0]) == 204
    fresh_id = got[1]["resource"]["id"]
    assert server.http.get(server.url(f"Patient/{fresh_id}")).status_code == 410
    post(server, "Patient", _patient("Another", "cu-1"))
    before = _history_total(server)
    r = _send(server, _transaction([
        {"resource": _patient("Nope"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|cu-1"}}]))
    assert r.status_code == 412, r.text
    assert _history_total(server) == before


# -- identities --------------------------------------------------------------------------------


def _twice(kind: str, existing: str) -> list[dict[str, Any]]:
    put_x = {"resource": {**_patient("X", "same-x"), "id": existing},
             "request": {"method": "PUT", "url": f"Patient/{existing}"}}
    if kind == "put-put":
        return [put_x, copy.deepcopy(put_x)]
    if kind == "put-delete":
        return [put_x, {"request": {"method": "DELETE", "url": f"Patient/{existing}"}}]
    if kind == "delete-delete":
        d = {"request": {"method": "DELETE", "url": f"Patient/{existing}"}}
        return [d, copy.deepcopy(d)]
    if kind == "put-conditional-put":
        return [put_x, {"resource": _patient("Y", "same-x"),
                        "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|same-x"}}]
    if kind == "put-patch":
        return [put_x, {"resource": {"resourceType": "Binary",
                                     "contentType": "application/json-patch+json",
                                     "data": "W10="},
                        "request": {"method": "PATCH", "url": f"Patient/{existing}"}}]
    if kind == "same-full-url":
        e = {"fullUrl": "urn:uuid:2f1d1c3a-0000-4000-8000-000000000001",
             "resource": _patient("Z"), "request": {"method": "POST", "url": "Patient"}}
        return [e, copy.deepcopy(e)]
    raise AssertionError(kind)


def test_same_resource_twice_is_400(server: LiveServer) -> None:
    """Two entries on one resource identity (also once resolved) fail the transaction
    (https://hl7.org/fhir/R4/http.html#trules)."""
    existing = put(server, "Patient/same-1",
                   {**_patient("S", "same-x"), "id": "same-1"}).json()["id"]
    before = _history_total(server)
    for kind in ("put-put", "put-delete", "delete-delete", "put-conditional-put", "put-patch",
                 "same-full-url"):
        r = _send(server, _transaction(_twice(kind, existing)))
        assert r.status_code == 400, (kind, r.text)
        assert "Bundle.entry[1]" in outcome_text(r), kind
    assert _history_total(server) == before


# -- the response Bundle ---------------------------------------------------------------------


def test_transaction_response_entries(server: LiveServer) -> None:
    """transaction-response: one entry per request entry, same order, each with status and,
    for writes, location, etag and lastModified, whatever `Prefer: return` asks
    (https://hl7.org/fhir/R4/bundle.html, https://hl7.org/fhir/R4/http.html#ops)."""
    for n, prefer in enumerate((None, "return=minimal", "return=OperationOutcome")):
        put(server, f"Patient/del-{n}", {**_patient("D"), "id": f"del-{n}"})
        entries = [
            {"resource": {**_patient("U"), "id": f"put-{n}"},
             "request": {"method": "PUT", "url": f"Patient/put-{n}"}},
            {"request": {"method": "DELETE", "url": f"Patient/del-{n}"}},
            {"resource": _patient("P"), "request": {"method": "POST", "url": "Patient"}},
        ]
        headers = {"Prefer": prefer} if prefer else {}
        r = _send(server, _transaction(entries), **headers)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["resourceType"] == "Bundle" and out["type"] == "transaction-response"
        got = out["entry"]
        deleted = "200 OK" if prefer == "return=OperationOutcome" else "204 No Content"
        assert [e["response"]["status"] for e in got] == ["201 Created", deleted, "201 Created"]
        for e in (got[0], got[2]):
            resp = e["response"]
            assert re.fullmatch(rf"{re.escape(server.base)}/Patient/[^/]+/_history/1",
                                resp["location"]), prefer
            assert resp["etag"] == 'W/"1"'
            assert INSTANT.match(resp.get("lastModified", "")), (prefer, resp)
            if prefer is None:
                assert e["resource"]["meta"]["versionId"] == "1"
                assert e["resource"]["meta"]["lastUpdated"] == resp["lastModified"]
            else:
                assert "resource" not in e, prefer
            if prefer == "return=OperationOutcome":
                assert resp["outcome"]["resourceType"] == "OperationOutcome"
        assert got[1]["response"]["etag"] == 'W/"2"'
        assert got[0]["response"]["location"] == server.url(f"Patient/put-{n}/_history/1")


def test_empty_transaction(server: LiveServer) -> None:
    """A transaction with no entries succeeds with an empty transaction-response.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    r = _send(server, {"resourceType": "Bundle", "type": "transaction"})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "transaction-response"
    assert not r.json().get("entry")


# -- malformed ---------------------------------------------------------------------------------


MALFORMED: dict[str, tuple[Any, str]] = {
    "collection": ({"resourceType": "Bundle", "type": "collection", "entry": []}, "Bundle.type"),
    "document": ({"resourceType": "Bundle", "type": "document"}, "Bundle.type"),
    "response-type": ({"resourceType": "Bundle", "type": "transaction-response"}, "Bundle.type"),
    "no-type": ({"resourceType": "Bundle", "entry": []}, "Bundle.type"),
    "not-a-bundle": (_patient("P"), "resourceType"),
    "no-resource-type": ({"type": "transaction", "entry": []}, "resourceType"),
    "array": ([{"resourceType": "Bundle", "type": "transaction"}], ""),
    "entry-not-array": ({"resourceType": "Bundle", "type": "transaction", "entry": {}},
                        "Bundle.entry"),
    "entry-without-request": (_transaction([{"resource": _patient("P")}]), "Bundle.entry[0]"),
    "entry-not-object": (_transaction(["Patient"]), "Bundle.entry[0]"),
    "no-method": (_transaction([{"resource": _patient("P"), "request": {"url": "Patient"}}]),
                  "Bundle.entry[0]"),
    "bad-method": (_transaction([{"resource": _patient("P"),
                                  "request": {"method": "FETCH", "url": "Patient"}}]),
                   "Bundle.entry[0]"),
    "no-url": (_transaction([{"resource": _patient("P"), "request": {"method": "POST"}}]),
               "Bundle.entry[0]"),
    "post-without-resource": (_transaction([{"request": {"method": "POST", "url": "Patient"}}]),
                              "Bundle.entry[0]"),
    "resource-not-object": (_transaction([{"resource": "Patient",
                                           "request": {"method": "POST", "url": "Patient"}}]),
                            "Bundle.entry[0]"),
    "type-mismatch": (_transaction([{"resource": _patient("P"),
                                     "request": {"method": "POST", "url": "Observation"}}]),
                      "Bundle.entry[0]"),
    "nested-bundle": (_transaction([{"resource": {"resourceType": "Bundle", "type": "batch"},
                                     "request": {"method": "POST", "url": "/"}}]),
                      "Bundle.entry[0]"),
    "post-to-instance": (_transaction([{"resource": _patient("P"),
                                        "request": {"method": "POST", "url": "Patient/1"}}]),
                         "Bundle.entry[0]"),
    "patch-not-binary": (_transaction([{"resource": _patient("P"),
                                        "request": {"method": "PATCH", "url": "Patient/1"}}]),
                         "Bundle.entry[0]"),
}


def test_malformed_bundles_are_400(server: LiveServer) -> None:
    """What is not a transaction/batch Bundle, or has an entry that cannot be run, gets 400
    with an OperationOutcome naming the element; nothing is written, not even the valid entry
    after the bad one (https://hl7.org/fhir/R4/http.html#transaction)."""
    good = {"resource": _patient("Good"), "request": {"method": "POST", "url": "Patient"}}
    for case, (body, where) in MALFORMED.items():
        if isinstance(body, dict) and isinstance(body.get("entry"), list) and body["entry"]:
            body = {**body, "entry": [*body["entry"], good]}
        r = _send(server, body)
        allowed = (400, 405) if case == "post-to-instance" else (400,)
        assert r.status_code in allowed, (case, r.text)
        assert where in outcome_text(r), case
    assert _history_total(server) == 0


def test_unreadable_bodies(server: LiveServer) -> None:
    """Bodies that are not FHIR JSON: 400 (or 415 for another media type), OperationOutcome.
    See https://hl7.org/fhir/R4/http.html#mime-type."""
    bundle = b'{"resourceType": "Bundle", "type": "transaction"}'
    for raw, ctype, status in ((b"{not json", "application/fhir+json", 400),
                               (b"", "application/fhir+json", 400),
                               (b"\xff\xfe", "application/fhir+json", 400),
                               (bundle, "text/plain", 415),
                               (bundle, "application/fhir+xml", 400)):  # not XML
        r = server.http.post(server.base, data=raw, headers={"Content-Type": ctype})
        assert r.status_code == status, (raw, ctype, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


def test_absolute_request_urls_on_this_base(server: LiveServer) -> None:
    """An entry url may be absolute when it names this server's base.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    r = server.http.post(server.base, data=json.dumps(_transaction([
        {"resource": {**_patient("Abs"), "id": "abs-1"},
         "request": {"method": "PUT", "url": server.url("Patient/abs-1")}}])), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert server.http.get(server.url("Patient/abs-1")).status_code == 200
