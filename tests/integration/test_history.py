"""history at instance, type and system level over real HTTP on both backends
(https://hl7.org/fhir/R4/http.html#history): order, entries, _since, _at, _count, paging."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from tests.conftest import LiveServer
from tests.integration.helpers import outcome_text, post, put


def _patient(family: str, pid: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if pid:
        res["id"] = pid
    return res


def _obs(text: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": text}}


def _history(server: LiveServer, path: str, **params: str) -> dict[str, Any]:
    r = server.http.get(server.url(path), params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body


def _key(entry: dict[str, Any]) -> tuple[str, str]:
    """(Type/id, version) of a history entry, deletions included."""
    url = entry["fullUrl"].split("/fhir/")[1]
    return url, entry["response"]["etag"].removeprefix('W/"').rstrip('"')


def _next(bundle: dict[str, Any]) -> str | None:
    return next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == "next"), None)


def test_instance_history_newest_first_with_deletes(server: LiveServer) -> None:
    """Every version, newest first, each with request and response; the deletion has method
    DELETE and no resource; a later update brings the resource back.
    See https://hl7.org/fhir/R4/http.html#history."""
    assert put(server, "Patient/h1", _patient("One", "h1")).status_code == 201
    assert put(server, "Patient/h1", _patient("Two", "h1")).status_code == 200
    patched = server.http.patch(
        server.url("Patient/h1"), data=json.dumps([{"op": "add", "path": "/gender",
                                                   "value": "female"}]),
        headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert server.http.delete(server.url("Patient/h1")).status_code == 204
    assert put(server, "Patient/h1", _patient("Back", "h1")).status_code == 201
    put(server, "Patient/other", _patient("Other", "other"))  # not in h1's history
    hist = _history(server, "Patient/h1/_history")
    assert hist["total"] == 5
    entries = hist["entry"]
    assert [_key(e) for e in entries] == [("Patient/h1", str(v)) for v in (5, 4, 3, 2, 1)]
    assert [e["request"]["method"] for e in entries] == ["PUT", "DELETE", "PATCH", "PUT", "PUT"]
    for e in entries:
        assert e["fullUrl"] == server.url("Patient/h1")
        assert e["request"]["url"] == "Patient/h1"
        assert e["response"]["status"]
    deletion = entries[1]
    assert "resource" not in deletion
    assert deletion["response"]["etag"] == 'W/"4"'
    families = [e["resource"]["name"][0]["family"] for e in entries if "resource" in e]
    assert families == ["Back", "Two", "Two", "One"]
    assert entries[2]["resource"]["gender"] == "female"
    stamps = [e["response"]["lastModified"] for e in entries]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 5
    for e in entries:
        if "resource" in e:
            version = e["resource"]["meta"]["versionId"]
            assert e["response"]["etag"] == f'W/"{version}"'
            assert e["resource"]["meta"]["lastUpdated"] == e["response"]["lastModified"]
            vread = server.http.get(server.url(f"Patient/h1/_history/{version}"))
            assert vread.json() == e["resource"]


def test_create_entry_is_post_to_the_type(server: LiveServer) -> None:
    """A version made by create reads as `POST Patient` in history.
    See https://hl7.org/fhir/R4/http.html#history."""
    pid = post(server, "Patient", _patient("Posted")).json()["id"]
    (entry,) = _history(server, f"Patient/{pid}/_history")["entry"]
    assert entry["request"] == {"method": "POST", "url": "Patient"}
    assert entry["response"]["status"].startswith("201")


def test_type_and_system_history(server: LiveServer) -> None:
    """Type level holds only that type; system level holds every type; both newest first.
    See https://hl7.org/fhir/R4/http.html#history."""
    pids = [post(server, "Patient", _patient(f"P{i}")).json()["id"] for i in range(3)]
    oids = [post(server, "Observation", _obs(f"O{i}")).json()["id"] for i in range(2)]
    put(server, f"Patient/{pids[0]}", _patient("P0b", pids[0]))
    server.http.delete(server.url(f"Observation/{oids[1]}"))
    pat = _history(server, "Patient/_history")
    assert pat["total"] == 4
    assert all(e["fullUrl"].split("/")[-2] == "Patient" for e in pat["entry"])
    assert _key(pat["entry"][0]) == (f"Patient/{pids[0]}", "2")
    obs = _history(server, "Observation/_history")
    assert obs["total"] == 3
    assert obs["entry"][0]["request"]["method"] == "DELETE"
    system = _history(server, "_history")
    assert system["total"] == 7
    keys = [_key(e) for e in system["entry"]]
    assert keys[0] == (f"Observation/{oids[1]}", "2")
    assert keys[1] == (f"Patient/{pids[0]}", "2")
    assert set(keys) == {_key(e) for e in pat["entry"] + obs["entry"]}
    stamps = [e["response"]["lastModified"] for e in system["entry"]]
    assert stamps == sorted(stamps, reverse=True)
    assert _history(server, "Encounter/_history")["total"] == 0


def test_since(server: LiveServer) -> None:
    """_since: only versions made at or after the instant.
    See https://hl7.org/fhir/R4/http.html#history."""
    ids = [post(server, "Patient", _patient(f"S{i}")).json()["id"] for i in range(4)]
    put(server, f"Patient/{ids[0]}", _patient("S0b", ids[0]))
    everything = _history(server, "_history")["entry"]
    # the third newest version onwards
    cut = everything[2]["response"]["lastModified"]
    since = _history(server, "_history", _since=cut)
    assert [_key(e) for e in since["entry"]] == [_key(e) for e in everything[:3]]
    assert since["total"] == 3
    typed = _history(server, "Patient/_history", _since=cut)
    assert typed["total"] == 3
    inst = _history(server, f"Patient/{ids[0]}/_history", _since=cut)
    assert [_key(e) for e in inst["entry"]] == [(f"Patient/{ids[0]}", "2")]
    assert _history(server, "_history", _since="2000-01-01T00:00:00Z")["total"] == 5
    future = _history(server, "_history", _since="2999-01-01T00:00:00+01:00")
    assert future["total"] == 0 and not future.get("entry")


def test_at(server: LiveServer) -> None:
    """_at: the versions that were current at some point in the given time.
    See https://hl7.org/fhir/R4/http.html#history."""
    a = put(server, "Patient/at-a", _patient("A1", "at-a")).json()
    time.sleep(0.002)
    b = put(server, "Patient/at-b", _patient("B1", "at-b")).json()
    time.sleep(0.002)
    put(server, "Patient/at-a", _patient("A2", "at-a"))
    at_b = b["meta"]["lastUpdated"]
    typed = _history(server, "Patient/_history", _at=at_b)
    assert sorted(_key(e) for e in typed["entry"]) == [("Patient/at-a", "1"), ("Patient/at-b", "1")]
    inst = _history(server, "Patient/at-a/_history", _at=a["meta"]["lastUpdated"])
    assert [_key(e) for e in inst["entry"]] == [("Patient/at-a", "1")]
    now = _history(server, "Patient/at-a/_history", _at="2999-01-01T00:00:00Z")
    assert [_key(e) for e in now["entry"]] == [("Patient/at-a", "2")]
    assert _history(server, "Patient/_history", _at="1999-01-01T00:00:00Z")["total"] == 0


def test_count_and_paging_each_version_once_while_writing(server: LiveServer) -> None:
    """Following next links to the end yields every version exactly once, even though other
    writes land between the pages (https://hl7.org/fhir/R4/http.html#paging)."""
    ids = [post(server, "Patient", _patient(f"Pg{i}")).json()["id"] for i in range(15)]
    for pid in ids[:5]:
        put(server, f"Patient/{pid}", _patient("Pg-upd", pid))
    for pid in ids[5:8]:
        server.http.delete(server.url(f"Patient/{pid}"))
    oid = post(server, "Observation", _obs("between")).json()["id"]
    expected = {_key(e) for e in _history(server, "_history", _count="1000")["entry"]}
    assert len(expected) == 24
    first = _history(server, "_history", _count="5")
    assert len(first["entry"]) == 5 and first["total"] == 24
    seen = [_key(e) for e in first["entry"]]
    url = _next(first)
    pages = 1
    while url:
        # writes between pages: new resources, new versions of listed ones, a deletion
        post(server, "Patient", _patient(f"New{pages}"))
        put(server, f"Patient/{ids[pages]}", _patient(f"Again{pages}", ids[pages]))
        if pages == 2:
            server.http.delete(server.url(f"Observation/{oid}"))
        page = server.http.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["type"] == "history"
        seen.extend(_key(e) for e in body["entry"])
        url = _next(body)
        pages += 1
        assert pages < 20
    assert pages == 5
    assert len(seen) == len(set(seen)), [k for k in seen if seen.count(k) > 1]
    assert expected <= set(seen)
    # and the type level, three to a page
    typed: list[tuple[str, str]] = []
    url = server.url("Patient/_history?_count=3")
    while url:
        body = server.http.get(url).json()
        assert len(body.get("entry", [])) <= 3
        typed.extend(_key(e) for e in body.get("entry", []))
        url = _next(body)
    assert len(typed) == len(set(typed)) == _history(server, "Patient/_history")["total"]


def test_count_zero_and_over_limit(server: LiveServer) -> None:
    """_count=0 gives the total only; a huge _count is capped, not an error.
    See https://hl7.org/fhir/R4/http.html#history."""
    for i in range(3):
        post(server, "Patient", _patient(f"C{i}"))
    zero = _history(server, "_history", _count="0")
    assert zero["total"] == 3 and not zero.get("entry")
    big = _history(server, "_history", _count="100000")
    assert len(big["entry"]) == 3


def test_history_after_a_transaction(server: LiveServer) -> None:
    """Each entry of a committed transaction is a version in history.
    See https://hl7.org/fhir/R4/http.html#history."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a0d9f0c-0000-4000-8000-000000000001",
         "resource": _patient("T"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**_obs("t"), "subject": {
            "reference": "urn:uuid:6a0d9f0c-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = post(server, "", bundle)
    assert r.status_code == 200, r.text
    entries = _history(server, "_history")["entry"]
    assert [e["fullUrl"].split("/")[-2] for e in entries] == ["Observation", "Patient"]


def test_bad_parameters_are_400(server: LiveServer) -> None:
    """Malformed _since, _at or _count: 400 with an OperationOutcome naming the parameter.
    See https://hl7.org/fhir/R4/http.html#history."""
    post(server, "Patient", _patient("B"))
    for path in ("_history", "Patient/_history"):
        for name, value in (("_since", "yesterday"), ("_since", "2024-13-01T00:00:00Z"),
                            ("_since", "2024-01-01T25:00:00Z"), ("_since", ""),
                            ("_at", "not-a-date"), ("_count", "-1"), ("_count", "ten")):
            r = server.http.get(server.url(path), params={name: value})
            assert r.status_code == 400, (path, name, value, r.text)
            assert name in outcome_text(r)


def test_unknown_targets(server: LiveServer) -> None:
    """History of an id that never existed: 404; of an unknown type: 404.
    See https://hl7.org/fhir/R4/http.html#history."""
    r = server.http.get(server.url("Patient/nobody/_history"))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert server.http.get(server.url("NotAType/_history")).status_code == 404
    assert server.http.get(server.url("NotAType/1/_history")).status_code == 404


def test_paging_under_concurrent_writers_never_repeats(server: LiveServer) -> None:
    """With writers committing all the time (some with instants taken before a page was read
    but committed after), a walk through the next links never serves a version twice and
    misses none of those that existed before it began (https://hl7.org/fhir/R4/http.html#paging)."""
    for i in range(30):
        post(server, "Patient", _patient(f"Base{i}"))

    def writer() -> None:
        with requests.Session() as http:
            for _ in range(80):
                http.post(server.url("Patient"), json=_patient("W"),
                          headers={"Content-Type": "application/fhir+json"})

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    walks = 0
    try:
        while any(t.is_alive() for t in threads) and walks < 15:
            walks += 1
            before = {_key(e) for e in _history(server, "_history", _count="1000")["entry"]}
            seen: list[tuple[str, str]] = []
            url: str | None = server.url("_history?_count=7")
            while url:
                body = server.http.get(url).json()
                seen.extend(_key(e) for e in body.get("entry", []))
                url = _next(body)
                assert len(seen) < 1000
            assert len(seen) == len(set(seen)), [k for k in seen if seen.count(k) > 1]
            assert before <= set(seen)
    finally:
        for t in threads:
            t.join(60)
    assert walks >= 2
