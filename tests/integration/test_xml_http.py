"""FHIR XML over HTTP on both backends (https://hl7.org/fhir/R4/xml.html,
https://hl7.org/fhir/R4/http.html#mime-type): every interaction in and out in XML, driven by
plain `requests` as an XML-speaking EHR would, the XML checked with lxml."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from lxml import etree

from resources.json_to_xml import json_to_xml, to_xml
from tests.conftest import LiveServer
from tests.integration.helpers import EXAMPLES, example, synthea_files

F = "{http://hl7.org/fhir}"
NS = {"f": "http://hl7.org/fhir", "h": "http://www.w3.org/1999/xhtml"}
XML = "application/fhir+xml"
SEND_XML = {"Content-Type": XML, "Accept": XML}


def _xml(resp: requests.Response, status: int = 200) -> Any:
    """The parsed XML body, checking status and Content-Type."""
    assert resp.status_code == status, resp.text[:2000]
    assert resp.headers["Content-Type"].split(";")[0] in (XML, "application/xml"), resp.headers
    assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return etree.fromstring(resp.content)


def _value(root: Any, path: str) -> str | None:
    el = root.find(path, NS)
    return None if el is None else el.get("value")


def _outcome(resp: requests.Response, status: int) -> str:
    root = _xml(resp, status)
    assert root.tag == F + "OperationOutcome"
    return " | ".join(f"{_value(i, 'f:code')}:{_value(i, 'f:diagnostics')}:"
                      f"{','.join(e.get('value') for e in i.findall('f:expression', NS))}"
                      for i in root.findall("f:issue", NS))


def _strip_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


EXAMPLE_NAMES = ["Patient-example", "Observation-f001", "Observation-bmi", "Binary-f006",
                 "Questionnaire-3141", "MedicationRequest-medrx0301", "Condition-example",
                 "Encounter-f001", "AllergyIntolerance-example", "Organization-hl7"]


def test_examples_created_in_xml_read_back_in_both_formats(server: LiveServer) -> None:
    """POST each example as XML: 201 in XML; the JSON read is the example (plus id, meta);
    the XML read is the same tree as our XML of that JSON."""
    for name in EXAMPLE_NAMES:
        src = example(name)
        rtype = src["resourceType"]
        raw = (EXAMPLES / f"{name}.json").read_bytes()
        r = server.http.post(server.url(rtype), data=json_to_xml(raw), headers={
            "Content-Type": XML, "Accept": "*/*"})  # as curl: the answer follows the body
        root = _xml(r, 201)
        assert root.tag == F + rtype
        new_id = _value(root, "f:id")
        assert r.headers["Location"].endswith(f"/{rtype}/{new_id}/_history/1")
        as_json = server.http.get(server.url(f"{rtype}/{new_id}"),
                                  headers={"Accept": "application/fhir+json"}).json()
        assert _strip_meta(as_json) == _strip_meta(src), name
        as_xml = server.http.get(server.url(f"{rtype}/{new_id}"), headers={"Accept": XML})
        assert etree.tostring(_xml(as_xml)) == etree.tostring(
            etree.fromstring(to_xml(as_json))), name
        vread = server.http.get(server.url(f"{rtype}/{new_id}/_history/1"),
                                params={"_format": "xml"})
        assert _xml(vread).tag == F + rtype
        assert vread.headers["ETag"] == 'W/"1"'


def test_narrative_and_decimals_over_http(server: LiveServer) -> None:
    body = (b'<Observation xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
            b'<div xmlns="http://www.w3.org/1999/xhtml"><p>BP <b>&quot;high&quot;</b></p></div>'
            b'</text><status value="final"/><code><text value="x"/></code>'
            b'<valueQuantity><value value="120"/><unit value="mm[Hg]"/></valueQuantity>'
            b'</Observation>')
    root = _xml(server.http.post(server.url("Observation"), data=body, headers=SEND_XML), 201)
    assert _value(root, "f:valueQuantity/f:value") == "120"
    div = root.find("f:text/h:div", NS)
    assert div is not None and div.find("h:p/h:b", NS).text == '"high"'
    oid = _value(root, "f:id")
    got = server.http.get(server.url(f"Observation/{oid}")).json()
    assert got["text"]["div"] == ('<div xmlns="http://www.w3.org/1999/xhtml"><p>BP <b>&quot;'
                                  'high&quot;</b></p></div>')
    assert got["valueQuantity"]["value"] == 120


def test_update_conditional_and_prefer_in_xml(server: LiveServer) -> None:
    pat = ('<Patient xmlns="http://hl7.org/fhir"><id value="x1"/><identifier><system '
           'value="urn:mrn"/><value value="42"/></identifier><active value="true"/>'
           '<name><family value="Xml"/></name></Patient>')
    root = _xml(server.http.put(server.url("Patient/x1"), data=pat, headers=SEND_XML), 201)
    assert _value(root, "f:name/f:family") == "Xml"
    changed = pat.replace('value="Xml"', 'value="Xml2"')
    r = server.http.put(server.url("Patient/x1"), data=changed,
                        headers={**SEND_XML, "If-Match": 'W/"9"'})
    assert "412" in str(r.status_code) and _outcome(r, 412)
    r = server.http.put(server.url("Patient/x1"), data=changed,
                        headers={**SEND_XML, "If-Match": 'W/"1"',
                                 "Prefer": "return=OperationOutcome"})
    assert "information" in etree.tostring(_xml(r)).decode()
    r = server.http.put(server.url("Patient?identifier=urn:mrn|42"),
                        data=changed.replace("Xml2", "Xml3"), headers=SEND_XML)
    assert _value(_xml(r), "f:meta/f:versionId") == "3"
    r = server.http.post(server.url("Patient"), data=changed,
                         headers={**SEND_XML, "If-None-Exist": "identifier=urn:mrn|42"})
    assert _value(_xml(r, 200), "f:id") == "x1"  # the match, nothing created
    r = server.http.put(server.url("Patient/x1"), data=changed,
                        headers={**SEND_XML, "Prefer": "return=minimal"})
    assert r.status_code == 200 and not r.content and "Content-Type" not in r.headers


def test_search_and_history_bundles_in_xml(server: LiveServer) -> None:
    for family in ("Alpha", "Beta", "Gamma"):
        server.http.post(server.url("Patient"), data=json.dumps(
            {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}),
            headers={"Content-Type": "application/fhir+json"})
    root = _xml(server.http.get(server.url("Patient"), params={
        "gender": "female", "_sort": "family", "_count": "2", "_format": "xml"}))
    assert root.tag == F + "Bundle" and _value(root, "f:type") == "searchset"
    assert _value(root, "f:total") == "3"
    families = [_value(e, "f:resource/f:Patient/f:name/f:family")
                for e in root.findall("f:entry", NS)]
    assert families == ["Alpha", "Beta"]
    assert [_value(e, "f:search/f:mode") for e in root.findall("f:entry", NS)] == ["match"] * 2
    nxt = [_value(link, "f:url") for link in root.findall("f:link", NS)
           if _value(link, "f:relation") == "next"]
    assert nxt and "_format=xml" in nxt[0]
    page2 = _xml(server.http.get(nxt[0]))
    assert [_value(e, "f:resource/f:Patient/f:name/f:family")
            for e in page2.findall("f:entry", NS)] == ["Gamma"]
    hist = _xml(server.http.get(server.url("Patient/_history"), headers={"Accept": XML}))
    assert _value(hist, "f:type") == "history"
    assert len(hist.findall("f:entry/f:resource/f:Patient", NS)) == 3
    assert {_value(e, "f:request/f:method") for e in hist.findall("f:entry", NS)} == {"POST"}
    # the JSON of the same search, written as XML by us, is the same document
    as_json = server.http.get(server.url("Patient"), params={"gender": "female",
                                                             "_sort": "family"}).json()
    as_xml = _xml(server.http.get(server.url("Patient"), params={
        "gender": "female", "_sort": "family"}, headers={"Accept": XML}))
    assert len(as_xml.findall("f:entry", NS)) == len(as_json["entry"]) == 3


def test_transaction_of_a_synthea_patient_in_xml(server: LiveServer) -> None:
    path = synthea_files()[0]
    bundle = json.loads(path.read_bytes())
    r = server.http.post(server.base, data=json_to_xml(path.read_bytes()), headers=SEND_XML)
    root = _xml(r)
    assert _value(root, "f:type") == "transaction-response"
    statuses = [_value(e, "f:response/f:status") for e in root.findall("f:entry", NS)]
    assert len(statuses) == len(bundle["entry"]) and set(statuses) == {"201 Created"}
    patient = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    found = server.http.get(server.url("Patient"), params={
        "identifier": patient["identifier"][0]["value"]}).json()
    assert found["total"] == 1
    assert _strip_meta(found["entry"][0]["resource"]) == _strip_meta(patient)


def test_batch_in_xml_with_a_failing_entry(server: LiveServer) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "active": True},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
    ]}
    root = _xml(server.http.post(server.base, data=to_xml(batch), headers=SEND_XML))
    entries = root.findall("f:entry", NS)
    assert _value(root, "f:type") == "batch-response"
    assert _value(entries[0], "f:response/f:status") == "201 Created"
    assert _value(entries[1], "f:response/f:status").startswith("404")
    assert entries[1].find("f:response/f:outcome/f:OperationOutcome", NS) is not None


@pytest.mark.parametrize(("body", "expect"), [
    (b"<Patient", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<Patient xmlns="http://hl7.org/fhir"><gender value="&x;"/></Patient>', "DOCTYPE"),
    (b'<Patient xmlns="http://hl7.org/fhir"><nickname value="x"/></Patient>',
     "unknown element <nickname>:Patient.nickname"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><active value="true"/>'
     b"</Patient>", "must come before <gender>"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender value="robot"/></Patient>',
     "Patient.gender"),  # well-formed FHIR XML, refused by the R4 validation
    (b'<Observation xmlns="http://hl7.org/fhir"><code><text value="x"/></code></Observation>',
     "status"),
])
def test_bad_xml_bodies_are_400_outcomes(server: LiveServer, body: bytes, expect: str) -> None:
    rtype = "Observation" if b"<Observation" in body else "Patient"
    r = server.http.post(server.url(rtype), data=body, headers=SEND_XML)
    assert expect in _outcome(r, 400)
    r = server.http.post(server.url(rtype), data=body,
                         headers={"Content-Type": XML, "Accept": "application/fhir+json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert server.http.get(server.url(f"{rtype}/_history"), headers={
        "Accept": "application/fhir+json"}).json()["total"] == 0  # nothing written


def test_wrong_type_in_url_and_body(server: LiveServer) -> None:
    r = server.http.post(server.url("Observation"), headers=SEND_XML,
                         data=b'<Patient xmlns="http://hl7.org/fhir"/>')
    assert "does not match" in _outcome(r, 400)


def test_errors_are_xml_outcomes_everywhere(server: LiveServer) -> None:
    assert "not-found" in _outcome(server.http.get(server.url("Patient/nope"),
                                                   headers={"Accept": XML}), 404)
    assert "not-supported" in _outcome(server.http.get(server.url("Nonsense/1"),
                                                       params={"_format": "xml"}), 404)
    # raised by Flask before the dispatcher: a path outside the FHIR base
    outside = server.base.rsplit("/fhir", 1)[0] + "/elsewhere"
    assert "not-found" in _outcome(server.http.get(outside, headers={"Accept": XML}), 404)
    r = server.http.get(outside, headers={"Accept": "application/fhir+json"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = server.http.get(server.url("Patient"), params={"_format": "html"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"


def test_operations_take_and_give_parameters_in_xml(server: LiveServer) -> None:
    server.http.put(server.url("Patient/op1"), data=json.dumps(
        {"resourceType": "Patient", "id": "op1"}), headers={"Content-Type":
                                                             "application/fhir+json"})
    params = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {
        "tag": [{"system": "urn:t", "code": "xml"}]}}]}
    r = server.http.post(server.url("Patient/op1/$meta-add"), data=to_xml(params),
                         headers=SEND_XML)
    root = _xml(r)
    assert root.tag == F + "Parameters"
    assert _value(root, "f:parameter/f:name") == "return"
    assert _value(root, "f:parameter/f:valueMeta/f:tag/f:code") == "xml"
    got = _xml(server.http.get(server.url("Patient/op1/$meta"), headers={"Accept": XML}))
    assert _value(got, "f:parameter/f:valueMeta/f:tag/f:system") == "urn:t"
    r = server.http.post(server.url("Patient/op1/$meta-add"), headers=SEND_XML,
                         data=b'<Parameters xmlns="http://hl7.org/fhir"><parameter>'
                              b'<name value="meta"/><valueMeta><tag><bogus value="1"/></tag>'
                              b"</valueMeta></parameter></Parameters>")
    assert "Parameters.parameter[0].valueMeta.tag[0].bogus" in _outcome(r, 400)
    od = _xml(server.http.get(server.url("OperationDefinition/Resource-meta-add"),
                              headers={"Accept": XML}))
    assert od.tag == F + "OperationDefinition"


def test_capability_statement_in_xml_lists_xml(server: LiveServer) -> None:
    root = _xml(server.http.get(server.url("metadata"), headers={"Accept": XML}))
    assert root.tag == F + "CapabilityStatement"
    formats = [f.get("value") for f in root.findall("f:format", NS)]
    assert "application/fhir+xml" in formats and "xml" in formats
    patch_formats = [f.get("value") for f in root.findall("f:patchFormat", NS)]
    assert "application/fhir+xml" in patch_formats
    assert len(root.findall("f:rest/f:resource", NS)) == 146


def test_accept_negotiation_over_http(server: LiveServer) -> None:
    server.http.put(server.url("Patient/n1"), data=json.dumps(
        {"resourceType": "Patient", "id": "n1"}), headers={"Content-Type":
                                                            "application/fhir+json"})
    url = server.url("Patient/n1")

    def ctype(**kw: Any) -> str:
        r = server.http.get(url, **kw)
        assert r.status_code == 200
        return r.headers["Content-Type"].split(";")[0]

    assert ctype(headers={"Accept": "application/fhir+json;q=0.5, application/fhir+xml"}) == XML
    assert ctype(headers={"Accept": "application/fhir+xml;q=0.5, application/fhir+json"}) == \
        "application/fhir+json"
    assert ctype(headers={"Accept": "application/xml"}) == "application/xml"
    assert ctype(headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,"
                                    "*/*;q=0.8"}) == "application/xml"
    assert ctype(headers={"Accept": "application/fhir+json;q=0, */*"}) == XML
    # `+` unescaped in the query string arrives as a space
    r = requests.get(url + "?_format=application/fhir+xml", timeout=10)
    assert r.headers["Content-Type"].startswith(XML)
    assert ctype(params={"_format": "xml"}, headers={"Accept": "application/fhir+json"}) == XML
    pretty = server.http.get(url, params={"_format": "xml", "_pretty": "true"})
    assert b'\n  <id value="n1"/>' in pretty.content
    head = server.http.head(url, headers={"Accept": XML})
    assert head.status_code == 200 and not head.content
    assert head.headers["Content-Type"].startswith(XML)


def test_fhirpath_patch_in_xml(server: LiveServer) -> None:
    """A FHIRPath Patch sent as XML Parameters (https://hl7.org/fhir/R4/fhirpatch.html)."""
    server.http.put(server.url("Patient/pa1"), data=json.dumps(
        {"resourceType": "Patient", "id": "pa1", "name": [{"family": "Before"}]}),
        headers={"Content-Type": "application/fhir+json"})
    patch = (b'<Parameters xmlns="http://hl7.org/fhir">'
             b'<parameter><name value="operation"/>'
             b'<part><name value="type"/><valueCode value="add"/></part>'
             b'<part><name value="path"/><valueString value="Patient"/></part>'
             b'<part><name value="name"/><valueString value="active"/></part>'
             b'<part><name value="value"/><valueBoolean value="true"/></part></parameter>'
             b'<parameter><name value="operation"/>'
             b'<part><name value="type"/><valueCode value="replace"/></part>'
             b'<part><name value="path"/><valueString value="Patient.name[0].family"/></part>'
             b'<part><name value="value"/><valueString value="After"/></part></parameter>'
             b"</Parameters>")
    root = _xml(server.http.patch(server.url("Patient/pa1"), data=patch,
                                  headers={**SEND_XML, "If-Match": 'W/"1"'}))
    assert _value(root, "f:active") == "true"
    assert _value(root, "f:name/f:family") == "After"
    assert _value(root, "f:meta/f:versionId") == "2"
    r = server.http.patch(server.url("Patient/pa1"), data=patch,
                          headers={**SEND_XML, "If-Match": 'W/"1"'})
    assert _outcome(r, 412)


def test_patch_in_xml_needs_a_patch_format(server: LiveServer) -> None:
    """An XML PATCH body must be a FHIRPath Patch (a Parameters resource)
    (https://hl7.org/fhir/R4/http.html#patch); XML Patch (RFC 5261) is not offered."""
    server.http.put(server.url("Patient/pa1"), data=json.dumps(
        {"resourceType": "Patient", "id": "pa1"}), headers={"Content-Type":
                                                             "application/fhir+json"})
    r = server.http.patch(server.url("Patient/pa1"), headers=SEND_XML,
                          data=b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/>'
                               b"</Patient>")
    assert "FHIRPath Patch" in _outcome(r, 400)
    r = server.http.patch(server.url("Patient/pa1"), headers={
        "Content-Type": "application/xml-patch+xml", "Accept": XML},
        data=b'<diff><add sel="Patient"><active value="true"/></add></diff>')
    assert _outcome(r, 415)


def test_stored_json_xml_cannot_carry_is_a_clear_answer(server: LiveServer) -> None:
    """A string with U+0001 is valid R4 JSON but cannot be XML 1.0: the XML read says so and
    the JSON read still works."""
    server.http.put(server.url("Patient/cc1"), data=json.dumps(
        {"resourceType": "Patient", "id": "cc1", "name": [{"family": "a\u0001b"}]}),
        headers={"Content-Type": "application/fhir+json"})
    r = server.http.get(server.url("Patient/cc1"), headers={"Accept": XML})
    assert "U+0001" in _outcome(r, 406) and "Patient.name[0].family" in _outcome(r, 406)
    assert "ETag" not in r.headers
    ok = server.http.get(server.url("Patient/cc1"), headers={"Accept": "application/fhir+json"})
    assert ok.status_code == 200 and ok.json()["name"][0]["family"] == "a\u0001b"


def test_narratives_are_checked_on_write_and_namespaced_in_xml(server: LiveServer) -> None:
    def put(div: str) -> requests.Response:
        return server.http.put(server.url("Patient/nd1"), data=json.dumps(
            {"resourceType": "Patient", "id": "nd1", "text": {"status": "generated",
                                                              "div": div}}),
            headers={"Content-Type": "application/fhir+json"})

    r = put("<div><p>unclosed</div>")
    assert r.status_code == 400 and "not well-formed" in r.text
    assert put("<div><p>plain</p></div>").status_code == 201
    root = _xml(server.http.get(server.url("Patient/nd1"), headers={"Accept": XML}))
    assert root.find("f:text/h:div/h:p", NS).text == "plain"


def test_errors_before_the_dispatcher_follow_the_format_too(store: Any, db_url: str) -> None:
    """A body over the size limit is refused by the WSGI layer, before FHIR code runs: its
    OperationOutcome is XML when the client speaks XML."""
    from fhir_server.app import create_app
    from fhir_server.config import Config

    client = create_app(Config(db_url=db_url, max_body_bytes=200), store=store).test_client()
    big = b'<Patient xmlns="http://hl7.org/fhir">' + b"<!-- padding -->" * 50 + b"</Patient>"
    r = client.post("/fhir/Patient", data=big, headers={"Content-Type": XML})
    assert r.status_code == 413 and r.headers["Content-Type"].startswith(XML)
    root = etree.fromstring(r.data)
    assert _value(root, "f:issue/f:code") == "too-long"
    r = client.post("/fhir/Patient", data=big, headers={"Content-Type": XML,
                                                         "Accept": "application/fhir+json"})
    assert r.status_code == 413 and r.json["resourceType"] == "OperationOutcome"
