"""patch with JSON Patch over real HTTP on both backends (https://hl7.org/fhir/R4/http.html#patch,
RFC 6902, RFC 5789 for the error codes). The other formats, and the same edits in each format,
are in test_patch_formats.py."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.conftest import LiveServer
from tests.integration.helpers import outcome_text, post, put

JSON_PATCH = "application/json-patch+json"
SYS = "http://example.org/fhir/ids"


def _patch(server: LiveServer, path: str, ops: Any, ctype: str = JSON_PATCH,
           **headers: str) -> requests.Response:
    body = ops if isinstance(ops, bytes) else json.dumps(ops).encode()
    return server.http.patch(server.url(path), data=body,
                             headers={"Content-Type": ctype, **headers})


def _new(server: LiveServer, pid: str = "pt", **extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Patient", "id": pid, "active": True,
            "name": [{"family": "Chalmers", "given": ["Peter"]}], **extra}
    r = put(server, f"Patient/{pid}", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _versions(server: LiveServer, pid: str = "pt") -> int:
    return int(server.http.get(server.url(f"Patient/{pid}/_history")).json()["total"])


def test_add_replace_remove_test(server: LiveServer) -> None:
    """All four common operations in one patch; the result is a new version, returned and
    stored (https://hl7.org/fhir/R4/http.html#patch)."""
    _new(server, gender="male")
    ops = [
        {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
        {"op": "add", "path": "/birthDate", "value": "1974-12-25"},
        {"op": "add", "path": "/name/0/given/-", "value": "James"},
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "remove", "path": "/active"},
    ]
    r = _patch(server, "Patient/pt", ops)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"2"'
    assert r.headers["Content-Location"].endswith("/Patient/pt/_history/2")
    body = r.json()
    assert body["meta"]["versionId"] == "2"
    assert body["birthDate"] == "1974-12-25"
    assert body["name"][0]["given"] == ["Peter", "James"]
    assert body["gender"] == "female"
    assert "active" not in body
    assert server.http.get(server.url("Patient/pt")).json() == body
    assert server.http.get(server.url("Patient/pt/_history/1")).json()["active"] is True
    hist = server.http.get(server.url("Patient/pt/_history")).json()
    assert hist["entry"][0]["request"]["method"] == "PATCH"


def test_copy_and_move(server: LiveServer) -> None:
    """move and copy (RFC 6902 section 4.4, 4.5) work too.
    See https://www.rfc-editor.org/rfc/rfc6902."""
    _new(server)
    r = _patch(server, "Patient/pt", [
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1/given", "path": "/name/0/prefix"},
    ])
    assert r.status_code == 200, r.text
    assert r.json()["name"] == [{"family": "Chalmers", "given": ["Peter"], "prefix": ["Peter"]},
                                {"family": "Chalmers"}]


def test_failing_test_op_is_422_and_writes_nothing(server: LiveServer) -> None:
    """A `test` that fails: 422 Unprocessable Entity, no new version.
    See https://hl7.org/fhir/R4/http.html#patch."""
    _new(server)
    for ops in ([{"op": "test", "path": "/name/0/family", "value": "Smith"}],
                [{"op": "replace", "path": "/active", "value": False},
                 {"op": "test", "path": "/gender", "value": "male"}]):
        r = _patch(server, "Patient/pt", ops)
        assert r.status_code == 422, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
    assert _versions(server) == 1


def test_unappliable_paths_are_422(server: LiveServer) -> None:
    """Operations on paths that do not exist cannot be applied: 422.
    See https://hl7.org/fhir/R4/http.html#patch."""
    _new(server)
    for ops in ([{"op": "replace", "path": "/gender", "value": "male"}],
                [{"op": "remove", "path": "/address"}],
                [{"op": "add", "path": "/name/7/family", "value": "X"}],
                [{"op": "move", "from": "/telecom", "path": "/contact"}]):
        r = _patch(server, "Patient/pt", ops)
        assert r.status_code == 422, (ops, r.text)
    assert _versions(server) == 1


def test_patch_leaving_an_invalid_resource_is_422(server: LiveServer) -> None:
    """The patched resource is validated like any write: a patch that would leave it invalid
    is 422 (RFC 5789 section 2.2, "a modification ... that would cause the resource to become
    invalid"), the element at fault is named, and nothing is written
    (https://hl7.org/fhir/R4/http.html#patch)."""
    _new(server)
    for ops, where in (
        ([{"op": "replace", "path": "/active", "value": "yes"}], "Patient.active"),
        ([{"op": "add", "path": "/gender", "value": "sometimes"}], "Patient.gender"),
        ([{"op": "add", "path": "/favouriteColour", "value": "blue"}], "favouriteColour"),
        ([{"op": "add", "path": "/name/0/given", "value": "Peter"}], "given"),
        ([{"op": "add", "path": "/birthDate", "value": "25/12/1974"}], "birthDate"),
    ):
        r = _patch(server, "Patient/pt", ops)
        assert r.status_code == 422, (ops, r.text)
        assert where in outcome_text(r), ops
        assert any(where in x for i in r.json()["issue"] for x in i.get("expression", [])), ops
    assert _versions(server) == 1
    assert server.http.get(server.url("Patient/pt")).json()["active"] is True


def test_changing_id_or_type_is_422(server: LiveServer) -> None:
    """A patch may not change the resource's id or type.
    See https://hl7.org/fhir/R4/http.html#patch."""
    _new(server)
    for ops in ([{"op": "replace", "path": "/id", "value": "other"}],
                [{"op": "remove", "path": "/id"}],
                [{"op": "replace", "path": "/resourceType", "value": "Person"}]):
        r = _patch(server, "Patient/pt", ops)
        assert r.status_code == 422, (ops, r.text)
    assert _versions(server) == 1
    assert server.http.get(server.url("Patient/other")).status_code == 404


def test_malformed_patch_documents_are_400(server: LiveServer) -> None:
    """What is not a JSON Patch document is a bad request (RFC 5789 section 2.2).
    See https://hl7.org/fhir/R4/http.html#patch."""
    _new(server)
    for raw in (b"", b"{not json", b'{"op": "add"}', b'"add"', b"[1]",
                b'[{"path": "/gender", "value": "male"}]',
                b'[{"op": "frobnicate", "path": "/gender"}]',
                b'[{"op": "add", "value": "male"}]'):
        r = _patch(server, "Patient/pt", raw)
        assert r.status_code == 400, (raw, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert _versions(server) == 1


def test_wrong_content_type(server: LiveServer) -> None:
    """A JSON Patch array is application/json-patch+json: under another patch media type it is
    a 400 (it is not a merge patch or Parameters), under a media type that is no patch format
    (XML Patch is not offered) a 415 (https://hl7.org/fhir/R4/http.html#patch)."""
    _new(server)
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    for ctype in ("application/fhir+json", "application/json", "application/merge-patch+json"):
        r = _patch(server, "Patient/pt", ops, ctype=ctype)
        assert r.status_code == 400, (ctype, r.text)
        assert "application/json-patch+json" in outcome_text(r)
    for ctype in ("text/plain", "application/xml-patch+xml"):
        r = _patch(server, "Patient/pt", ops, ctype=ctype)
        assert r.status_code == 415, (ctype, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = server.http.patch(server.url("Patient/pt"), data=json.dumps(ops))
    assert r.status_code == 415
    assert _patch(server, "Patient/pt", ops,
                  ctype="application/json-patch+json; charset=utf-8").status_code == 200


def test_if_match(server: LiveServer) -> None:
    """If-Match naming the current version applies; a stale one is 412 (#concurrency).
    See https://hl7.org/fhir/R4/http.html#concurrency."""
    _new(server)
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    ok = _patch(server, "Patient/pt", ops, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"'
    stale = _patch(server, "Patient/pt", ops, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    assert _patch(server, "Patient/pt", ops, **{"If-Match": "bogus"}).status_code == 400
    assert _versions(server) == 2


def test_prefer_return(server: LiveServer) -> None:
    """Prefer: return=minimal gives no body, the headers still say the version.
    See https://hl7.org/fhir/R4/http.html#ops."""
    _new(server)
    r = _patch(server, "Patient/pt", [{"op": "add", "path": "/gender", "value": "male"}],
               Prefer="return=minimal")
    assert r.status_code == 200 and not r.content
    assert r.headers["ETag"] == 'W/"2"'


def test_unknown_and_deleted_targets(server: LiveServer) -> None:
    """PATCH on an id that never existed: 404; on a deleted resource: 410.
    See https://hl7.org/fhir/R4/http.html#patch."""
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    assert _patch(server, "Patient/nobody", ops).status_code == 404
    _new(server)
    server.http.delete(server.url("Patient/pt"))
    r = _patch(server, "Patient/pt", ops)
    assert r.status_code == 410, r.text
    assert _versions(server) == 2


def test_conditional_patch(server: LiveServer) -> None:
    """PATCH [type]?criteria: the one match is patched; none is 404; several are 412.
    See https://hl7.org/fhir/R4/http.html#patch."""
    _new(server, "cp1", identifier=[{"system": SYS, "value": "one"}])
    for pid in ("cp2", "cp3"):
        _new(server, pid, identifier=[{"system": SYS, "value": "two"}])
    ops = [{"op": "add", "path": "/gender", "value": "other"}]
    r = _patch(server, f"Patient?identifier={SYS}|one", ops)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "cp1" and r.json()["gender"] == "other"
    assert _patch(server, f"Patient?identifier={SYS}|none", ops).status_code == 404
    several = _patch(server, f"Patient?identifier={SYS}|two", ops)
    assert several.status_code == 412, several.text
    assert _versions(server, "cp2") == _versions(server, "cp3") == 1
    bad = _patch(server, "Patient?no-such-param=1", ops)
    assert bad.status_code == 400, bad.text


def test_patched_resource_is_searchable(server: LiveServer) -> None:
    """The index follows the patch: the new value is found, the old one no longer.
    See https://hl7.org/fhir/R4/http.html#patch."""
    pid = post(server, "Patient", {"resourceType": "Patient",
                                   "name": [{"family": "Before"}]}).json()["id"]
    assert _patch(server, f"Patient/{pid}", [
        {"op": "replace", "path": "/name/0/family", "value": "Afterwards"}]).status_code == 200
    found = server.http.get(server.url("Patient"), params={"family": "Afterwards"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [pid]
    old = server.http.get(server.url("Patient"), params={"family:exact": "Before"}).json()
    assert not old.get("entry")
