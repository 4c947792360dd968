"""Every patch format over real HTTP on both backends, on the same edits: the same starting
resource and the same intended change give the same result in JSON Patch (RFC 6902), FHIRPath
Patch (https://hl7.org/fhir/R4/fhirpatch.html), JSON Merge Patch (RFC 7396) and a merge patch
sent as application/json (as fhirpy's patch() sends it); then each format's bad inputs, If-Match,
conditional patch and PATCH entries of transaction and batch Bundles
(https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer
from tests.integration.helpers import FHIR_JSON, outcome_text, post, put

Json = dict[str, Any]
SYS = "http://example.org/fhir/ids"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
MARITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                       "code": "M"}]}

START: Json = {
    "resourceType": "Patient",
    "active": True,
    "identifier": [{"system": SYS, "value": "one"}, {"system": SYS, "value": "two"}],
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter"]}],
    "telecom": [{"system": "phone", "value": "555-0101"},
                {"system": "email", "value": "peter@example.org"}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "deceasedBoolean": False,
    "address": [{"city": "PleasantVille"}],
    "managingOrganization": {"reference": "Organization/acme", "display": "Acme"},
}


def fp(kind: str, path: str, **parts: Any) -> Json:
    """One FHIRPath Patch operation; value=... is the value part's content."""
    out: list[Json] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, v in parts.items():
        if name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": v})
        elif name == "name":
            out.append({"name": "name", "valueString": v})
        else:
            out.append({"name": "value", **v})
    return {"name": "operation", "part": out}


def params(*ops: Json) -> Json:
    return {"resourceType": "Parameters", "parameter": list(ops)}


@dataclass(frozen=True)
class Edit:
    """One intended change, written in each format, and what it makes of START."""

    json_patch: list[Json]
    fhirpath: list[Json]
    merge: Json
    change: Callable[[Json], None]


def _set(**values: Any) -> Callable[[Json], None]:
    def change(r: Json) -> None:
        for k, v in values.items():
            if v is None:
                r.pop(k, None)
            else:
                r[k] = copy.deepcopy(v)
    return change


def _ids(*values: str) -> list[Json]:
    return [{"system": SYS, "value": v} for v in values]


NAME_JAMES = [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}]
NAME_SMITH = [{"use": "official", "family": "Chalmers-Smith", "given": ["Peter"]}]
CONTACT = [{"name": {"family": "du Marché", "given": ["Bénédicte"]}, "gender": "female"}]
BIRTH_EXT = {"extension": [{"url": BIRTH_TIME, "valueDateTime": "1974-12-25T14:35:45-05:00"}]}

EDITS: dict[str, Edit] = {
    "replace a primitive": Edit(
        [{"op": "replace", "path": "/gender", "value": "female"}],
        [fp("replace", "Patient.gender", value={"valueCode": "female"})],
        {"gender": "female"}, _set(gender="female")),
    "add a choice primitive": Edit(
        [{"op": "add", "path": "/multipleBirthInteger", "value": 2}],
        [fp("add", "Patient", name="multipleBirth", value={"valueInteger": 2})],
        {"multipleBirthInteger": 2}, _set(multipleBirthInteger=2)),
    "delete a primitive": Edit(
        [{"op": "remove", "path": "/active"}],
        [fp("delete", "Patient.active")],
        {"active": None}, _set(active=None)),
    "append to a list": Edit(
        [{"op": "add", "path": "/name/0/given/-", "value": "James"}],
        [fp("add", "Patient.name[0]", name="given", value={"valueString": "James"})],
        {"name": NAME_JAMES}, _set(name=NAME_JAMES)),
    "insert into a list": Edit(
        [{"op": "add", "path": "/identifier/0", "value": _ids("zero")[0]}],
        [fp("insert", "Patient.identifier", index=0, value={"valueIdentifier": _ids("zero")[0]})],
        {"identifier": _ids("zero", "one", "two")}, _set(identifier=_ids("zero", "one", "two"))),
    "delete from a list": Edit(
        [{"op": "remove", "path": "/telecom/1"}],
        [fp("delete", "Patient.telecom[1]")],
        {"telecom": START["telecom"][:1]}, _set(telecom=START["telecom"][:1])),
    "move within a list": Edit(
        [{"op": "move", "from": "/identifier/1", "path": "/identifier/0"}],
        [fp("move", "Patient.identifier", source=1, destination=0)],
        {"identifier": _ids("two", "one")}, _set(identifier=_ids("two", "one"))),
    "replace a nested primitive": Edit(
        [{"op": "replace", "path": "/name/0/family", "value": "Chalmers-Smith"}],
        [fp("replace", "Patient.name[0].family", value={"valueString": "Chalmers-Smith"})],
        {"name": NAME_SMITH}, _set(name=NAME_SMITH)),
    "add a datatype": Edit(
        [{"op": "add", "path": "/maritalStatus", "value": MARITAL}],
        [fp("add", "Patient", name="maritalStatus", value={"valueCodeableConcept": MARITAL})],
        {"maritalStatus": MARITAL}, _set(maritalStatus=MARITAL)),
    "add anonymous content": Edit(
        [{"op": "add", "path": "/contact", "value": CONTACT}],
        [fp("add", "Patient", name="contact", value={"part": [
            {"name": "name", "valueHumanName": CONTACT[0]["name"]},
            {"name": "gender", "valueCode": "female"}]})],
        {"contact": CONTACT}, _set(contact=CONTACT)),
    "delete a reference": Edit(
        [{"op": "remove", "path": "/managingOrganization"}],
        [fp("delete", "Patient.managingOrganization")],
        {"managingOrganization": None}, _set(managingOrganization=None)),
    "change the type of a choice": Edit(
        [{"op": "remove", "path": "/deceasedBoolean"},
         {"op": "add", "path": "/deceasedDateTime", "value": "2020-02-29T10:00:00Z"}],
        [fp("replace", "Patient.deceased", value={"valueDateTime": "2020-02-29T10:00:00Z"})],
        {"deceasedBoolean": None, "deceasedDateTime": "2020-02-29T10:00:00Z"},
        _set(deceasedBoolean=None, deceasedDateTime="2020-02-29T10:00:00Z")),
    "extend a primitive": Edit(
        [{"op": "add", "path": "/_birthDate", "value": BIRTH_EXT}],
        [fp("add", "Patient.birthDate", name="extension", value={"part": [
            {"name": "url", "valueUri": BIRTH_TIME},
            {"name": "value", "valueDateTime": "1974-12-25T14:35:45-05:00"}]})],
        {"_birthDate": BIRTH_EXT}, _set(_birthDate=BIRTH_EXT)),
    "change a list item chosen by a criterion": Edit(
        [{"op": "replace", "path": "/identifier/1/value", "value": "deux"}],
        [fp("replace", "Patient.identifier.where(value = 'two').value",
            value={"valueString": "deux"})],
        {"identifier": _ids("one", "deux")}, _set(identifier=_ids("one", "deux"))),
    "several changes at once": Edit(
        [{"op": "replace", "path": "/gender", "value": "other"},
         {"op": "remove", "path": "/address"},
         {"op": "replace", "path": "/birthDate", "value": "1975"}],
        [fp("replace", "Patient.gender", value={"valueCode": "other"}),
         fp("delete", "Patient.address"),
         fp("replace", "Patient.birthDate", value={"valueDate": "1975"})],
        {"gender": "other", "address": None, "birthDate": "1975"},
        _set(gender="other", address=None, birthDate="1975")),
}

FORMATS = ("application/json-patch+json", "application/fhir+json",
           "application/merge-patch+json", "application/json")


def _body(edit: Edit, ctype: str) -> Any:
    if ctype == "application/json-patch+json":
        return edit.json_patch
    if ctype == "application/fhir+json":
        return params(*edit.fhirpath)
    return edit.merge


def _patch(server: LiveServer, path: str, body: Any, ctype: str,
           **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.http.patch(server.url(path), data=data,
                             headers={"Content-Type": ctype, **headers})


def _new(server: LiveServer, pid: str, body: Json | None = None) -> Json:
    r = put(server, f"Patient/{pid}", {**(body or START), "id": pid})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _content(resource: Json) -> Json:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def _versions(server: LiveServer, pid: str) -> int:
    return int(server.http.get(server.url(f"Patient/{pid}/_history")).json()["total"])


def _expected(edit: Edit) -> Json:
    out = _content(copy.deepcopy(START))
    edit.change(out)
    return out


@pytest.mark.parametrize("edit_name", list(EDITS))
def test_same_edit_same_result_in_every_format(server: LiveServer, edit_name: str) -> None:
    """The edit applied in each format to its own copy of START: 200, version 2, the stored
    resource equal to the answer, the PATCH in the history, and one result for all formats."""
    edit = EDITS[edit_name]
    want = _expected(edit)
    results = {}
    for n, ctype in enumerate(FORMATS):
        pid = f"pf-{n}"
        _new(server, pid)
        r = _patch(server, f"Patient/{pid}", _body(edit, ctype), ctype)
        assert r.status_code == 200, (ctype, r.text)
        assert r.headers["ETag"] == 'W/"2"', ctype
        body = r.json()
        assert body["id"] == pid and body["meta"]["versionId"] == "2", ctype
        assert _content(body) == want, ctype
        assert server.http.get(server.url(f"Patient/{pid}")).json() == body, ctype
        hist = server.http.get(server.url(f"Patient/{pid}/_history")).json()
        assert hist["entry"][0]["request"]["method"] == "PATCH", ctype
        results[ctype] = _content(body)
    assert all(v == results[FORMATS[0]] for v in results.values())


def test_edits_cover_every_fhirpath_operation() -> None:
    """The edits above use add, insert, delete, replace and move (the R4 operation codes)."""
    used = {p["part"][0]["valueCode"] for e in EDITS.values() for p in e.fhirpath}
    assert used == {"add", "insert", "delete", "replace", "move"}


# -- bad inputs, format by format ------------------------------------------------------------


def test_fhirpath_patch_bad_inputs(server: LiveServer) -> None:
    """Malformed Parameters and paths a patch may not use: 400 naming the parameter; well-formed
    operations that do not apply, or would leave an invalid resource, a changed id: 422 naming
    the element. Nothing is written."""
    _new(server, "fb", {**START, "communication": [
        {"language": {"text": "French"}, "preferred": True}]})
    ctype = "application/fhir+json"
    bad_400 = [
        (params({"name": "operation", "part": [{"name": "type", "valueCode": "remove"},
                                               {"name": "path", "valueString": "Patient.x"}]}),
         "Parameters.parameter[0].part[0]"),
        (params({"name": "op", "part": [{"name": "type", "valueCode": "delete"}]}),
         "Parameters.parameter[0].name"),
        (params(fp("delete", "Patient.name[(")), "Parameters.parameter[0].part[1]"),
        (params(fp("delete", "Patient.nmae")), "Parameters.parameter[0]"),
        (params(fp("delete", "Patient.name.count()")), "Parameters.parameter[0]"),
        (params(fp("delete", "Patient.managingOrganization.resolve()")),
         "Parameters.parameter[0]"),
        ({"resourceType": "Parameters", "parameter": [{"name": "operation",
                                                       "valueBoolean": "yes"}]},
         "Parameters.parameter[0].valueBoolean"),
    ]
    for body, where in bad_400:
        r = _patch(server, "Patient/fb", body, ctype)
        assert r.status_code == 400, (body, r.text)
        assert where in outcome_text(r), (where, r.text)
    bad_422 = [
        (params(fp("replace", "Patient.maritalStatus", value={"valueCodeableConcept": MARITAL})),
         "No content found"),
        (params(fp("replace", "Patient.identifier.value", value={"valueString": "x"})),
         "matches 2 elements"),
        (params(fp("add", "Patient", name="gender", value={"valueCode": "female"})),
         "already has a value"),
        (params(fp("add", "Patient", name="birthDate", value={"valueBoolean": True})),
         "does not fit"),
        (params(fp("insert", "Patient.identifier", index=5,
                   value={"valueIdentifier": {"value": "x"}})),
         "past the end"),
        (params(fp("replace", "Patient.gender", value={"valueCode": "sometimes"})),
         "Patient.gender"),
        (params(fp("replace", "Patient.birthDate", value={"valueString": "25/12/1974"})),
         "Patient.birthDate"),
        (params(fp("replace", "Patient.id", value={"valueId": "other"})), "id"),
        (params(fp("delete", "Patient.communication[0].language")),
         "Patient.communication[0].language"),
    ]
    for body, words in bad_422:
        r = _patch(server, "Patient/fb", body, ctype)
        assert r.status_code == 422, (body, r.text)
        assert words in outcome_text(r), (words, r.text)
    assert _versions(server, "fb") == 1
    assert server.http.get(server.url("Patient/other")).status_code == 404


def test_merge_patch_bad_inputs(server: LiveServer) -> None:
    """A body that is not a JSON object: 400. A merge that would leave an invalid resource,
    change the id or type, or remove the id: 422 naming the element. Nothing is written."""
    _new(server, "mb")
    for ctype in ("application/merge-patch+json", "application/json"):
        for raw in (b"", b"{oops", b'"gender"', b"null", b'[{"gender": "male"}]'):
            r = _patch(server, "Patient/mb", raw, ctype)
            assert r.status_code == 400, (ctype, raw, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
        for body, where in (
            ({"gender": "sometimes"}, "Patient.gender"),
            ({"active": "yes"}, "Patient.active"),
            ({"favouriteColour": "blue"}, "favouriteColour"),
            ({"name": {"family": "NotAList"}}, "Patient.name"),
            ({"name": [{}]}, "Patient.name"),
            ({"id": "other"}, "Patient.id"),
            ({"id": None}, "Patient.id"),
            ({"resourceType": "Person"}, "resourceType"),
            ({"resourceType": None}, "resourceType"),
        ):
            r = _patch(server, "Patient/mb", body, ctype)
            assert r.status_code == 422, (ctype, body, r.text)
            assert where in outcome_text(r), (where, r.text)
    assert _versions(server, "mb") == 1


def test_media_types(server: LiveServer) -> None:
    """A PATCH without a Content-Type, or with one that is no patch format (XML Patch is not
    offered), is a 415 naming the formats; charset parameters are fine; a merge patch that
    names the resource's own type and id is fine (fhirpy's deprecated conditional patch sends
    the resourceType)."""
    _new(server, "mt")
    r = server.http.patch(server.url("Patient/mt"), data=json.dumps({"gender": "female"}))
    assert r.status_code == 415, r.text
    for ctype in ("text/plain", "application/xml-patch+xml", "application/x-www-form-urlencoded"):
        r = _patch(server, "Patient/mt", {"gender": "female"}, ctype)
        assert r.status_code == 415, (ctype, r.text)
        text = outcome_text(r)
        assert "application/json-patch+json" in text and "application/merge-patch+json" in text
    assert _versions(server, "mt") == 1
    r = _patch(server, "Patient/mt", {"resourceType": "Patient", "id": "mt", "gender": "female"},
               "application/merge-patch+json; charset=utf-8")
    assert r.status_code == 200, r.text
    r = _patch(server, "Patient/mt", params(fp("replace", "Patient.gender",
                                                  value={"valueCode": "other"})),
               "application/fhir+json; fhirVersion=4.0")
    assert r.status_code == 200 and r.json()["gender"] == "other", r.text


@pytest.mark.parametrize("ctype", FORMATS)
def test_if_match_prefer_and_targets(server: LiveServer, ctype: str) -> None:
    """If-Match with the current version applies, a stale one is 412, a malformed one 400;
    Prefer: return=minimal leaves the body out; an unknown id is 404, a deleted one 410
    (https://hl7.org/fhir/R4/http.html#concurrency)."""
    edit = EDITS["replace a primitive"]
    _new(server, "im")
    ok = _patch(server, "Patient/im", _body(edit, ctype), ctype, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"', ok.text
    stale = _patch(server, "Patient/im", _body(edit, ctype), ctype, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    bogus = _patch(server, "Patient/im", _body(edit, ctype), ctype, **{"If-Match": "yes"})
    assert bogus.status_code == 400, bogus.text
    minimal = _patch(server, "Patient/im", _body(edit, ctype), ctype, Prefer="return=minimal")
    assert minimal.status_code == 200 and not minimal.content
    assert minimal.headers["ETag"] == 'W/"3"'
    assert _versions(server, "im") == 3
    assert _patch(server, "Patient/nobody", _body(edit, ctype), ctype).status_code == 404
    server.http.delete(server.url("Patient/im"))
    assert _patch(server, "Patient/im", _body(edit, ctype), ctype).status_code == 410


@pytest.mark.parametrize("ctype", FORMATS)
def test_conditional_patch(server: LiveServer, ctype: str) -> None:
    """PATCH [type]?criteria in each format: the one match is patched; none is 404; several are
    412 and nothing changes (https://hl7.org/fhir/R4/http.html#patch)."""
    _new(server, "c1", {**START, "identifier": _ids("c-one")})
    _new(server, "c2", {**START, "identifier": _ids("c-two")})
    _new(server, "c3", {**START, "identifier": _ids("c-two")})
    body = _body(EDITS["replace a primitive"], ctype)
    r = _patch(server, f"Patient?identifier={SYS}|c-one", body, ctype)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "c1" and r.json()["gender"] == "female"
    assert _patch(server, f"Patient?identifier={SYS}|none", body, ctype).status_code == 404
    assert _patch(server, f"Patient?identifier={SYS}|c-two", body, ctype).status_code == 412
    assert _versions(server, "c2") == _versions(server, "c3") == 1


# -- PATCH entries of Bundles ----------------------------------------------------------------


def _binary(ctype: str, doc: Any) -> Json:
    return {"resourceType": "Binary", "contentType": ctype,
            "data": base64.b64encode(json.dumps(doc).encode()).decode()}


def _entry_resources(edit: Edit) -> dict[str, Json]:
    """A PATCH entry's resource in each format: Binary for the documents, Parameters for
    FHIRPath Patch (https://hl7.org/fhir/R4/http.html#patch)."""
    return {
        "json-patch": _binary("application/json-patch+json", edit.json_patch),
        "fhirpath": params(*edit.fhirpath),
        "merge": _binary("application/merge-patch+json", edit.merge),
    }


@pytest.mark.parametrize("bundle_type", ["transaction", "batch"])
def test_bundle_patch_entries(server: LiveServer, bundle_type: str) -> None:
    """Each format as a PATCH entry gives the same result as over HTTP; a conditional PATCH url
    works; a urn:uuid reference in a FHIRPath Patch value resolves to the resource created in
    the same transaction."""
    edit = EDITS["add anonymous content"]
    entries = []
    for n, resource in enumerate(_entry_resources(edit).values()):
        _new(server, f"be-{n}", {**START, "identifier": _ids(f"be-{n}")})
        url = f"Patient/be-{n}" if n % 2 == 0 else f"Patient?identifier={SYS}|be-{n}"
        entries.append({"resource": resource, "request": {"method": "PATCH", "url": url},
                        "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}"})
    r = post(server, "", {"resourceType": "Bundle", "type": bundle_type, "entry": entries})
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [e["response"]["status"] for e in got] == ["200 OK"] * 3, r.text
    want = {**_expected(edit), "identifier": None}
    for n in range(3):
        stored = server.http.get(server.url(f"Patient/be-{n}")).json()
        assert stored["meta"]["versionId"] == "2"
        assert {**_content(stored), "identifier": None} == want, n
    if bundle_type == "transaction":
        org_urn = "urn:uuid:0a0a0a0a-0000-4000-8000-000000000001"
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": org_urn, "resource": {"resourceType": "Organization", "name": "New Org"},
             "request": {"method": "POST", "url": "Organization"}},
            {"resource": params(fp("replace", "Patient.managingOrganization",
                                   value={"valueReference": {"reference": org_urn}})),
             "request": {"method": "PATCH", "url": "Patient/be-0"}}]}
        r = post(server, "", tx)
        assert r.status_code == 200, r.text
        org_id = r.json()["entry"][0]["resource"]["id"]
        ref = server.http.get(server.url("Patient/be-0")).json()["managingOrganization"]
        assert ref == {"reference": f"Organization/{org_id}"}


def test_bundle_patch_entry_errors(server: LiveServer) -> None:
    """In a batch each bad PATCH entry fails on its own with its status; in a transaction one
    bad PATCH entry fails the whole Bundle, with the entry named, and nothing is written."""
    _new(server, "bx")
    good = params(fp("replace", "Patient.gender", value={"valueCode": "female"}))
    bad = [
        ({"resourceType": "Patient", "gender": "female"}, 400),  # neither Binary nor Parameters
        ({"resourceType": "Binary", "data": "e30="}, 400),  # no contentType
        ({"resourceType": "Binary", "contentType": "text/plain", "data": "e30="}, 415),
        (_binary("application/merge-patch+json", {"gender": "sometimes"}), 422),
        (params(fp("delete", "Patient.nmae")), 400),
        (params(fp("replace", "Patient.maritalStatus", value={"valueString": "x"})), 422),
    ]
    entries = [{"resource": res, "request": {"method": "PATCH", "url": "Patient/bx"}}
               for res, _ in bad]
    r = post(server, "", {"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert r.status_code == 200, r.text
    got = r.json()["entry"]
    assert [int(e["response"]["status"].split()[0]) for e in got] == [s for _, s in bad], r.text
    assert all(e["response"]["outcome"]["resourceType"] == "OperationOutcome" for e in got)
    for res, status in bad:
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "New"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": res, "request": {"method": "PATCH", "url": "Patient/bx"}}]}
        r = post(server, "", tx)
        assert r.status_code == status, (res, r.text)
        assert "Bundle.entry[1]" in outcome_text(r)
    assert _versions(server, "bx") == 1
    r = server.http.get(server.url("Patient"), params={"family": "New"})
    assert r.json().get("total", len(r.json().get("entry", []))) == 0
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": good, "request": {"method": "PATCH", "url": "Patient/bx"}}]}
    assert post(server, "", tx).status_code == 200
    assert _versions(server, "bx") == 2


def test_patch_is_searchable_in_every_format(server: LiveServer) -> None:
    """The search index follows each format's patch: the new value is found, the old not."""
    for n, ctype in enumerate(FORMATS):
        pid = f"ps-{n}"
        _new(server, pid, {**START, "name": [{"family": f"Before{n}"}]})
        body = {
            "application/json-patch+json": [
                {"op": "replace", "path": "/name/0/family", "value": f"After{n}"}],
            "application/fhir+json": params(fp("replace", "Patient.name.family",
                                               value={"valueString": f"After{n}"})),
        }.get(ctype, {"name": [{"family": f"After{n}"}]})
        assert _patch(server, f"Patient/{pid}", body, ctype).status_code == 200
        found = server.http.get(server.url("Patient"), params={"family": f"After{n}"}).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [pid], ctype
        old = server.http.get(server.url("Patient"), params={"family:exact": f"Before{n}"})
        assert not old.json().get("entry"), ctype


def test_capability_statement_lists_the_formats(server: LiveServer) -> None:
    """CapabilityStatement.patchFormat names the three formats, FHIRPath Patch in JSON and XML
    (https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.patchFormat)."""
    caps = server.http.get(server.url("metadata"), headers=FHIR_JSON).json()
    assert set(caps["patchFormat"]) == {"application/json-patch+json", "application/fhir+json",
                                        "application/fhir+xml", "application/merge-patch+json"}
    patient = next(r for r in caps["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"code": "patch"} in patient["interaction"]
