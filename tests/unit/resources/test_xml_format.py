"""The XML format converters (https://hl7.org/fhir/R4/xml.html): JSON -> XML -> JSON on every
official example, the XML rules one by one, and bodies that must be refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree

from resources.json_to_xml import XmlRenderError, json_to_xml, loads, to_xml
from resources.narrative import narrative_xml
from resources.xml_to_json import XmlParseError, parse, xml_to_json

EXAMPLES = sorted((Path(__file__).resolve().parents[4] / "shared" / "data" /
                   "fhir-r4-examples").glob("*.json"))
NS = {"f": "http://hl7.org/fhir", "h": "http://www.w3.org/1999/xhtml"}
# Its JSON keys are in alphabetical order, not the order of the definitions (which XML has)
NOT_IN_DEFINITION_ORDER = {"Questionnaire-qs1"}


def _pairs(raw: bytes) -> Any:
    """JSON with key order kept (lists of pairs) and numbers as their text."""
    return json.loads(raw, object_pairs_hook=list, parse_float=lambda s: ("decimal", s),
                      parse_int=lambda s: ("int", s))


def _values(raw: bytes) -> Any:
    return json.loads(raw, parse_float=lambda s: ("decimal", s))


def test_there_are_528_examples() -> None:
    assert len(EXAMPLES) == 528


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_official_examples_round_trip(path: Path) -> None:
    """JSON -> XML -> JSON is the same JSON: values, decimals as written, and key order."""
    raw = path.read_bytes()
    xml = json_to_xml(raw)
    root = etree.fromstring(xml)
    assert root.tag == "{http://hl7.org/fhir}" + json.loads(raw)["resourceType"]
    back = xml_to_json(xml)
    assert _values(back) == _values(raw)
    if path.stem not in NOT_IN_DEFINITION_ORDER:
        assert _pairs(back) == _pairs(raw)
    else:
        assert _pairs(back) != _pairs(raw)  # the XML (and our JSON) are in definition order


def test_elements_in_definition_order_with_value_attributes() -> None:
    res = {"resourceType": "Patient", "birthDate": "1970-01-01", "active": True,
           "name": [{"given": ["A", "B"], "family": "Z"}], "id": "p1"}
    xml = to_xml(res).decode()
    assert xml == (
        '<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">'
        '<id value="p1"/><active value="true"/><name><family value="Z"/><given value="A"/>'
        '<given value="B"/></name><birthDate value="1970-01-01"/></Patient>'
    )
    assert parse(xml.encode()) == {"resourceType": "Patient", "id": "p1", "active": True,
                                   "name": [{"family": "Z", "given": ["A", "B"]}],
                                   "birthDate": "1970-01-01"}


def test_primitive_ids_and_extensions_with_nulls_in_arrays() -> None:
    ext = [{"url": "http://example.org/x", "valueString": "v"}]
    res = {"resourceType": "Patient",
           "name": [{"given": ["A", None, "C"], "_given": [None, {"id": "g2", "extension": ext},
                                                           {"extension": ext}]}],
           "_birthDate": {"extension": ext}, "gender": "male", "_gender": {"id": "g"}}
    xml = to_xml(res)
    root = etree.fromstring(xml)
    given = root.findall("f:name/f:given", NS)
    assert [g.get("value") for g in given] == ["A", None, "C"]
    assert given[1].get("id") == "g2"
    assert given[1].find("f:extension", NS).get("url") == "http://example.org/x"
    assert root.find("f:gender", NS).attrib == {"id": "g", "value": "male"}
    assert root.find("f:birthDate", NS).get("value") is None
    back = parse(xml)
    assert back["name"][0]["given"] == ["A", None, "C"]
    assert back["name"][0]["_given"] == [None, {"id": "g2", "extension": ext},
                                         {"extension": ext}]
    assert back["_birthDate"] == {"extension": ext} and "birthDate" not in back
    assert back["_gender"] == {"id": "g"}


def test_decimals_keep_their_digits_both_ways() -> None:
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
           b'"valueQuantity":{"value":1.50},"referenceRange":[{"low":{"value":1e2},'
           b'"high":{"value":100.000000000000000001}}]}')
    xml = json_to_xml(raw)
    root = etree.fromstring(xml)
    assert root.find("f:valueQuantity/f:value", NS).get("value") == "1.50"
    assert root.find("f:referenceRange/f:low/f:value", NS).get("value") == "1e2"
    assert root.find("f:referenceRange/f:high/f:value", NS).get("value") == \
        "100.000000000000000001"
    back = xml_to_json(xml)
    assert b'"value":1.50' in back and b'"value":100.000000000000000001' in back
    assert b'"value":1e2' in back
    # a float held in a dict (an answer the server built) is written as JSON would write it
    assert b'value="0.1"' in to_xml({"resourceType": "Observation", "valueQuantity":
                                     {"value": 0.1}})


def test_attribute_values_keep_line_breaks_tabs_and_markup() -> None:
    text = 'line 1\nline 2\r\n\ttab & <b> "quoted"'
    res = {"resourceType": "Patient", "name": [{"text": text}]}
    xml = to_xml(res)
    assert b"&#10;" in xml and b"&#9;" in xml and b"&lt;b&gt;" in xml
    assert parse(xml)["name"][0]["text"] == text


def test_characters_xml_cannot_carry_are_refused() -> None:
    with pytest.raises(XmlRenderError, match="U\\+0001") as err:
        to_xml({"resourceType": "Patient", "name": [{"family": "a\x01b"}]})
    assert err.value.path == "Patient.name[0].family"


def test_element_id_and_extension_url_are_attributes() -> None:
    res = {"resourceType": "Patient", "extension": [
        {"id": "e1", "url": "http://example.org/a", "extension": [
            {"url": "inner", "valueDecimal": loads(b"2.0")}]}],
        "contact": [{"id": "c1", "gender": "female"}]}
    root = etree.fromstring(to_xml(res))
    ext = root.find("f:extension", NS)
    assert ext.attrib == {"id": "e1", "url": "http://example.org/a"}
    assert ext.find("f:extension/f:valueDecimal", NS).get("value") == "2.0"
    assert root.find("f:contact", NS).get("id") == "c1"
    assert orjson.loads(xml_to_json(to_xml(res)))["contact"] == [{"id": "c1",
                                                                   "gender": "female"}]


def test_contained_and_bundle_resources_are_named_by_type() -> None:
    res = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {
            "resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "t"},
            "contained": [{"resourceType": "Patient", "id": "p", "active": False}],
            "subject": {"reference": "#p"}}},
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "r", "resource": {"resourceType": "Binary", "contentType": "text/plain",
                                       "data": "aGVsbG8="}}]}}]}
    xml = to_xml(res)
    root = etree.fromstring(xml)
    obs = root.find("f:entry/f:resource/f:Observation", NS)
    assert obs is not None
    assert obs.find("f:contained/f:Patient/f:active", NS).get("value") == "false"
    binary = root.find("f:entry/f:resource/f:Parameters/f:parameter/f:resource/f:Binary", NS)
    assert binary.find("f:data", NS).get("value") == "aGVsbG8="
    assert parse(xml) == res


def test_narrative_is_kept_exactly() -> None:
    div = ('<div xmlns="http://www.w3.org/1999/xhtml"><p class="a">Say &quot;hi&quot; &amp; '
           "&lt;wave&gt;</p>\n  <br/><table><tr><td>é</td></tr></table></div>")
    res = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    xml = to_xml(res)
    assert div.encode() in xml  # embedded as written
    el = etree.fromstring(xml).find("f:text/h:div", NS)
    assert el is not None and el.find("h:p", NS).text == 'Say "hi" & <wave>'
    assert parse(xml)["text"]["div"] == div


def test_narrative_from_xml_has_only_its_own_namespace() -> None:
    body = (b'<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
            b'instance"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"'
            b'><p>x</p></div></text></Patient>')
    assert parse(body)["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'


def test_narrative_without_namespace_gets_it_and_bad_narrative_is_refused() -> None:
    assert narrative_xml("<div><p>x</p></div>") == \
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'
    for bad in ("<div><p>unclosed</div>", "<p>not a div</p>", "<div>&nbsp;</div>",
                '<div xmlns="urn:other">x</div>'):
        with pytest.raises(XmlRenderError, match="Patient.text.div"):
            to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": bad}})


def test_pretty_output_indents_fhir_elements_only() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>a</p><p>b</p></div>'
    res = {"resourceType": "Patient", "text": {"status": "generated", "div": div},
           "name": [{"family": "F"}]}
    xml = to_xml(res, pretty=True).decode()
    assert "\n  <name>\n    <family value=\"F\"/>\n  </name>\n" in xml
    assert div in xml
    assert parse(xml.encode()) == res


def _refused(body: bytes | str) -> XmlParseError:
    with pytest.raises(XmlParseError) as err:
        parse(body.encode() if isinstance(body, str) else body)
    return err.value


P = '<Patient xmlns="http://hl7.org/fhir">'


@pytest.mark.parametrize(("body", "message", "path"), [
    ("<Patient", "not well-formed", ""),
    ("", "empty", ""),
    ("<Patient/>", "not a FHIR resource", ""),
    ('<Patient xmlns="urn:other"/>', "not a FHIR resource", ""),
    ('<Nonsense xmlns="http://hl7.org/fhir"/>', "not an R4 resource type", ""),
    (P + '<nickname value="x"/></Patient>', "unknown element", "Patient.nickname"),
    (P + '<gender value="male"/><active value="true"/></Patient>', "must come before",
     "Patient.active"),
    (P + '<gender value="male"/><gender value="female"/></Patient>', "only once",
     "Patient.gender"),
    (P + '<deceasedBoolean value="true"/><deceasedDateTime value="2020"/></Patient>',
     "one choice", "Patient.deceasedDateTime"),
    (P + '<active value="yes"/></Patient>', "not a boolean", "Patient.active"),
    (P + '<multipleBirthInteger value="1.5"/></Patient>', "not an integer",
     "Patient.multipleBirthInteger"),
    ('<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/>'
     "</valueQuantity></Observation>", "not a decimal", "Observation.valueQuantity.value"),
    (P + "<active/></Patient>", "ele-1", "Patient.active"),
    (P + "<name></name></Patient>", "ele-1", "Patient.name[0]"),
    (P + "<active>true</active></Patient>", "text is not allowed", "Patient.active"),
    (P + "hello</Patient>", "text is not allowed", "Patient"),
    (P + '<active value="true" foo="1"/></Patient>', "no attribute 'foo'", "Patient.active"),
    (P + '<name value="x"/></Patient>', "not a primitive", "Patient.name[0]"),
    (P + '<text><status value="generated"/><div>x</div></text></Patient>', "XHTML namespace",
     "Patient.text.div"),
    ('<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry><resource/></entry>'
     "</Bundle>", "exactly one resource", "Bundle.entry[0].resource"),
])
def test_xml_that_does_not_match_the_definitions(body: str, message: str, path: str) -> None:
    err = _refused(body)
    assert message in err.message, err
    assert err.path == path


def test_doctype_entities_and_external_entities_are_refused() -> None:
    levels = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + levels +
              ']><Patient xmlns="http://hl7.org/fhir"><gender value="&lol9;"/></Patient>')
    assert "DOCTYPE" in _refused(laughs).message
    xxe = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<Patient xmlns="http://hl7.org/fhir"><gender value="&x;"/></Patient>')
    assert "DOCTYPE" in _refused(xxe).message
    external = ('<!DOCTYPE Patient SYSTEM "http://127.0.0.1:9/evil.dtd">'
                '<Patient xmlns="http://hl7.org/fhir"/>')
    assert "DOCTYPE" in _refused(external).message
    undefined = P + '<gender value="&nbsp;"/></Patient>'
    assert "not well-formed" in _refused(undefined).message


def test_deep_nesting_is_refused() -> None:
    inner = "<extension url=\"u\">" * 300 + "</extension>" * 300
    err = _refused(P + inner + "</Patient>")
    assert "deep" in err.message or "not well-formed" in err.message


def test_comments_processing_instructions_and_xsi_are_ignored() -> None:
    body = ('<?xml version="1.0" encoding="UTF-8"?><!-- a comment --><?pi x?>'
            '<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/'
            'XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir x.xsd">\n'
            '  <!-- c --><active value="true"/>\n</Patient>')
    assert parse(body.encode()) == {"resourceType": "Patient", "active": True}


def test_encodings_other_than_utf8_are_read() -> None:
    body = ('<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir">'
            '<name><family value="M\u00fcller"/></name></Patient>').encode("latin-1")
    assert parse(body)["name"][0]["family"] == "M\u00fcller"


def test_unknown_json_cannot_be_written() -> None:
    with pytest.raises(XmlRenderError, match="unknown element 'nickname'"):
        to_xml({"resourceType": "Patient", "nickname": "x"})
    with pytest.raises(XmlRenderError, match="unknown resourceType"):
        to_xml({"resourceType": "Nope"})
