"""batch over real HTTP on both backends (https://hl7.org/fhir/R4/http.html#transaction):
each entry succeeds or fails on its own, in a batch-response Bundle."""

from __future__ import annotations

import base64
import json
from typing import Any

import requests

from tests.conftest import LiveServer
from tests.integration.helpers import outcome_text, post, put

SYS = "http://example.org/fhir/ids"


def _batch(entries: list[Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def _send(server: LiveServer, entries: list[Any], **headers: str) -> requests.Response:
    return post(server, "", _batch(entries), **headers)


def _patient(family: str, ident: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if ident:
        res["identifier"] = [{"system": SYS, "value": ident}]
    return res


def _json_patch(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A PATCH entry's body: a Binary holding the JSON Patch (https://hl7.org/fhir/R4/http.html#patch)."""
    return {"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(ops).encode()).decode()}


def _status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


def _outcome(entry: dict[str, Any]) -> str:
    oo = entry["response"]["outcome"]
    assert oo["resourceType"] == "OperationOutcome"
    return " | ".join(f"{i.get('code')}:{i.get('diagnostics', '')}:{i.get('expression', '')}"
                      for i in oo["issue"])


def _history_total(server: LiveServer, path: str = "") -> int:
    r = server.http.get(server.url(f"{path}/_history" if path else "_history"),
                        params={"_count": "0"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_entries_succeed_and_fail_independently(server: LiveServer) -> None:
    """Every kind of entry; the bad ones get their own 4xx status and outcome, the good ones are
    done (https://hl7.org/fhir/R4/http.html#brules)."""
    put(server, "Patient/b-pre", {**_patient("Pre"), "id": "b-pre"})
    put(server, "Patient/b-gone", {**_patient("Gone"), "id": "b-gone"})
    stale = put(server, "Patient/b-stale", {**_patient("Stale"), "id": "b-stale"}).json()
    put(server, "Patient/b-stale", stale)
    entries: list[Any] = [
        {"resource": _patient("Created", "b-new"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "sometimes"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**_patient("Put"), "id": "b-put"},
         "request": {"method": "PUT", "url": "Patient/b-put"}},
        {"request": {"method": "GET", "url": "Patient/b-pre"}},
        {"request": {"method": "GET", "url": "Patient/b-never"}},
        {"request": {"method": "DELETE", "url": "Patient/b-gone"}},
        {"resource": _json_patch([{"op": "replace", "path": "/name/0/family", "value": "Patched"}]),
         "request": {"method": "PATCH", "url": "Patient/b-pre"}},
        {"resource": {**stale, "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/b-stale", "ifMatch": 'W/"1"'}},
        {"resource": _patient("NoRequest")},
        {"request": {"method": "GET", "url": "NoSuchType/1"}},
        {"resource": {**_patient("Mismatch"), "id": "b-x"},
         "request": {"method": "PUT", "url": "Patient/b-y"}},
        {"resource": _json_patch([{"op": "test", "path": "/gender", "value": "female"}]),
         "request": {"method": "PATCH", "url": "Patient/b-pre"}},
        "not an entry",
        {"request": {"method": "GET", "url": "Patient", "ifNoneMatch": "x"}},
    ]
    r = _send(server, entries)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["resourceType"] == "Bundle" and out["type"] == "batch-response"
    got = out["entry"]
    assert len(got) == len(entries)
    assert [_status(e) for e in got] == [201, 400, 201, 200, 404, 204, 200, 412, 400, 404, 400,
                                         422, 400, 200]
    for i in (1, 4, 7, 8, 9, 10, 11, 12):
        assert _outcome(got[i]), i
        assert "resource" not in got[i], i
    assert "gender" in _outcome(got[1])
    assert "Bundle.entry[8]" in _outcome(got[8])
    # the good ones are done, with location and etag
    new_id = got[0]["resource"]["id"]
    assert got[0]["response"]["location"] == server.url(f"Patient/{new_id}/_history/1")
    assert server.http.get(server.url(f"Patient/{new_id}")).status_code == 200
    assert got[2]["response"]["etag"] == 'W/"1"'
    assert server.http.get(server.url("Patient/b-put")).status_code == 200
    assert got[3]["resource"]["id"] == "b-pre"
    assert server.http.get(server.url("Patient/b-gone")).status_code == 410
    assert got[5]["response"]["etag"] == 'W/"2"'
    patched = server.http.get(server.url("Patient/b-pre")).json()
    assert patched["name"][0]["family"] == "Patched" and patched["meta"]["versionId"] == "2"
    assert got[6]["response"]["etag"] == 'W/"2"'
    assert got[13]["resource"]["type"] == "searchset"
    # the bad ones wrote nothing
    assert server.http.get(server.url("Patient/b-stale")).json()["meta"]["versionId"] == "2"
    assert server.http.get(server.url("Patient/b-y")).status_code == 404
    assert server.http.get(server.url("Patient/b-x")).status_code == 404
    # Patients: pre(2 versions) + gone(2) + stale(2) + created + put
    assert _history_total(server, "Patient") == 8


def test_batch_conditional_entries(server: LiveServer) -> None:
    """Conditional create, update and delete entries in a batch, including 412s that fail only
    their own entry (https://hl7.org/fhir/R4/http.html#brules)."""
    existing = post(server, "Patient", _patient("Existing", "bc-1")).json()
    for _ in range(2):
        post(server, "Patient", _patient("Twin", "bc-twin"))
    entries = [
        {"resource": _patient("Again", "bc-1"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYS}|bc-1"}},
        {"resource": _patient("New", "bc-2"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYS}|bc-2"}},
        {"resource": _patient("Twin3", "bc-twin"),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={SYS}|bc-twin"}},
        {"resource": _patient("Upd", "bc-1"),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|bc-1"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|bc-twin"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|bc-none"}},
    ]
    r = _send(server, entries)
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [200, 201, 412, 200, 412, 204]
    assert got[0]["resource"]["id"] == existing["id"]
    assert got[3]["resource"]["id"] == existing["id"]
    assert got[3]["response"]["etag"] == 'W/"2"'
    twins = server.http.get(server.url("Patient"), params={"identifier": f"{SYS}|bc-twin"}).json()
    assert len(twins["entry"]) == 2


def test_batch_patch_entries_bad_binaries(server: LiveServer) -> None:
    """PATCH entries need a Binary whose data is a base64 patch document (or a Parameters
    resource); anything else fails that entry with 400/422 and leaves the resource unchanged;
    a patch that would leave an invalid resource is a 422 like over HTTP.
    See https://hl7.org/fhir/R4/http.html#patch."""
    put(server, "Patient/bp", {**_patient("P"), "id": "bp"})
    bad_b64 = {"resourceType": "Binary", "contentType": "application/json-patch+json",
               "data": "***"}
    not_json = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": base64.b64encode(b"{oops").decode()}
    entries = [
        {"resource": _patient("NotBinary"), "request": {"method": "PATCH", "url": "Patient/bp"}},
        {"resource": bad_b64, "request": {"method": "PATCH", "url": "Patient/bp"}},
        {"resource": not_json, "request": {"method": "PATCH", "url": "Patient/bp"}},
        {"resource": _json_patch([{"op": "replace", "path": "/id", "value": "zz"}]),
         "request": {"method": "PATCH", "url": "Patient/bp"}},
        {"resource": _json_patch([{"op": "add", "path": "/gender", "value": "nope"}]),
         "request": {"method": "PATCH", "url": "Patient/bp"}},
        {"request": {"method": "PATCH", "url": "Patient/bp"}},
        {"resource": _json_patch([{"op": "add", "path": "/gender", "value": "other"}]),
         "request": {"method": "PATCH", "url": "Patient/missing"}},
    ]
    r = _send(server, entries)
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [400, 400, 400, 422, 422, 400, 404]
    for e in got:
        assert _outcome(e)
    assert _history_total(server, "Patient/bp") == 1


def test_many_entries_and_prefer_minimal(server: LiveServer) -> None:
    """A batch of 60 creates: 60 answers in order, each 201 with location; `Prefer:
    return=minimal` leaves the bodies out (https://hl7.org/fhir/R4/http.html#ops)."""
    entries = [{"resource": _patient(f"N{i}", f"many-{i}"),
                "request": {"method": "POST", "url": "Patient"}} for i in range(60)]
    r = _send(server, entries, Prefer="return=minimal")
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [201] * 60
    assert all("resource" not in e for e in got)
    locations = [e["response"]["location"] for e in got]
    assert len(set(locations)) == 60
    last = server.http.get(locations[-1]).json()
    assert last["identifier"][0]["value"] == "many-59"


def test_batch_level_errors(server: LiveServer) -> None:
    """What is wrong with the Bundle itself (not an entry) fails the whole batch with 400.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    for body, where in (
        ({"resourceType": "Bundle", "type": "batch", "entry": {"x": 1}}, "Bundle.entry"),
        ({"resourceType": "Bundle", "type": "batch-response"}, "Bundle.type"),
        ({"resourceType": "Bundle", "type": "searchset"}, "Bundle.type"),
    ):
        r = post(server, "", body)
        assert r.status_code == 400, r.text
        assert where in outcome_text(r)
    empty = post(server, "", {"resourceType": "Bundle", "type": "batch"})
    assert empty.status_code == 200 and empty.json()["type"] == "batch-response"
    assert _history_total(server) == 0


def test_nested_bundle_entry_is_refused(server: LiveServer) -> None:
    """A batch entry may not POST another Bundle to the base; that entry gets 400.
    See https://hl7.org/fhir/R4/http.html#transaction."""
    inner = _batch([{"resource": _patient("Inner"), "request": {"method": "POST",
                                                                "url": "Patient"}}])
    r = _send(server, [{"resource": inner, "request": {"method": "POST", "url": ""}},
                       {"resource": _patient("Outer"),
                        "request": {"method": "POST", "url": "Patient"}}])
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [_status(e) for e in got] == [400, 201]
    assert _history_total(server) == 1
