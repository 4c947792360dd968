"""Parsing search parameters: typed values, modifiers, result parameters and 400s."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.model import (
    Chain,
    Clause,
    CompositeValue,
    DateValue,
    Has,
    Include,
    InList,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    ValueSetValue,
    WordsValue,
)
from fhir_server.search.normalize import date_range
from fhir_server.search.parse import UNSUPPORTED, parse_search
from fhir_server.search.values_parse import split_escaped, unescape


def one(res_type: str, name: str, value: str) -> Clause:
    req = parse_search(res_type, [(name, value)], strict=True)
    assert len(req.criteria) == 1
    c = req.criteria[0]
    assert isinstance(c, Clause)
    return c


def bad(res_type: str | None, *pairs: tuple[str, str], strict: bool = False) -> FhirError:
    with pytest.raises(FhirError) as e:
        parse_search(res_type, list(pairs), strict=strict)
    assert e.value.status == 400
    return e.value


def test_tokens() -> None:
    assert one("Patient", "gender", "male").values == (TokenValue(None, "male"),)
    c = one("Observation", "code", "http://loinc.org|1234-5,|x,http://s|")
    assert c.values == (
        TokenValue("http://loinc.org", "1234-5"),
        TokenValue("", "x"),
        TokenValue("http://s", None),
    )
    assert one("Patient", "gender:not", "male").modifier == "not"


def test_escaping() -> None:
    assert split_escaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    assert split_escaped(r"a\\,b", ",") == [r"a\\", "b"]  # an escaped backslash, then a split
    assert split_escaped(r"a\\\,b,", ",") == [r"a\\\,b", ""]
    assert split_escaped("a,,b", ",") == ["a", "", "b"]
    assert split_escaped("a\\", ",") == ["a\\"]  # a trailing backslash is kept
    assert unescape(r"a\,b\|c\\d") == r"a,b|c\d"
    c = one("Patient", "identifier", r"http://s|a\|b")
    assert c.values == (TokenValue("http://s", "a|b"),)
    assert one("Patient", "name", r"a\,b").values == (StringValue("a,b", "a,b"),)


def test_dates_and_prefixes() -> None:
    c = one("Patient", "birthdate", "ge2020-01,lt1990")
    lo, hi = date_range("2020-01")
    assert c.values[0] == DateValue("ge", lo, hi)
    assert isinstance(c.values[1], DateValue) and c.values[1].prefix == "lt"
    for text in ("notadate", "ge", "2020-02-31", "xx2020"):
        e = bad("Patient", ("birthdate", text))
        assert "birthdate" in str(e)


def test_quantities() -> None:
    c = one("Observation", "value-quantity", "gt5.4|http://unitsofmeasure.org|mg")
    v = c.values[0]
    assert isinstance(v, QuantityValue)
    assert (v.prefix, v.number.value, v.system, v.code) == (
        "gt",
        5.4,
        "http://unitsofmeasure.org",
        "mg",
    )
    assert v.canon_code == "g" and v.canon is not None and abs(v.canon.value - 0.0054) < 1e-12
    v2 = one("Observation", "value-quantity", "5.4||mg").values[0]
    assert isinstance(v2, QuantityValue) and v2.system is None and v2.code == "mg"
    bad("Observation", ("value-quantity", "five|x|mg"))
    bad("Observation", ("value-quantity", "5|mg"))


def test_references() -> None:
    assert one("Observation", "subject", "Patient/1").values == (
        ReferenceValue("Patient", "1", None),
    )
    # a single-target parameter types a bare id
    org = one("Patient", "organization", "1")
    assert org.values == (ReferenceValue("Organization", "1", None),)
    assert one("Observation", "subject", "1").values == (ReferenceValue(None, "1", None),)
    c = one("Observation", "subject:Patient", "1")
    assert c.modifier == "type" and c.values == (ReferenceValue("Patient", "1", None),)
    url = one("Observation", "subject", "http://other/fhir/Patient/1")
    assert url.values == (ReferenceValue(None, None, "http://other/fhir/Patient/1"),)
    local = parse_search(
        "Observation",
        [("subject", "http://localhost/fhir/Patient/1")],
        base_url="http://localhost/fhir",
    )
    assert isinstance(local.criteria[0], Clause)
    assert local.criteria[0].values == (ReferenceValue("Patient", "1", None),)
    bad("Observation", ("subject:Medication", "1"))


def test_unknown_modifier_and_unsupported_modifier_are_400() -> None:
    assert "Unknown modifier" in str(bad("Patient", ("name:foo", "x")))
    assert "not supported" in str(bad("Observation", ("code:below", "http://loinc.org|1")))
    assert "not supported" in str(bad("Observation", ("code:above", "http://loinc.org|1")))
    assert "true or false" in str(bad("Patient", ("name:missing", "maybe")))
    assert one("Patient", "name:missing", "true").missing is True


def test_unknown_parameters_lenient_and_strict() -> None:
    req = parse_search("Patient", [("nonsense", "1"), ("name", "x")])
    assert len(req.criteria) == 1 and len(req.warnings) == 1
    assert "nonsense" in req.warnings[0].diagnostics
    assert req.applied == [("name", "x")]
    e = bad("Patient", ("nonsense", "1"), strict=True)
    assert "nonsense" in str(e)


def test_result_parameters() -> None:
    req = parse_search(
        "Observation",
        [
            ("_count", "10"),
            ("_sort", "-date,code"),
            ("_total", "accurate"),
            ("_include", "Observation:subject"),
            ("_revinclude:iterate", "Provenance:target"),
            ("_summary", "true"),
            ("_elements", "code,value"),
        ],
    )
    assert req.count == 10 and req.total == "accurate" and req.summary == "true"
    assert [(k.code, k.desc) for k in req.sort] == [("date", True), ("code", False)]
    assert req.includes == [
        Include("Observation", "subject", None, False, False),
        Include("Provenance", "target", None, True, True),
    ]
    assert req.elements == ("code", "value")
    assert parse_search("Patient", [("_count", "100000")]).count == 1000
    assert parse_search("Patient", [("_summary", "count")]).count == 0
    bad("Patient", ("_count", "ten"))
    bad("Patient", ("_count", "-1"))
    bad("Patient", ("_total", "maybe"))
    bad("Patient", ("_sort", "nonsense"))
    bad("Patient", ("_include", "Patient"))
    bad("Patient", ("_include", "Patient:gender"))
    bad("Patient", ("_summary", "everything"))


def test_chains_and_has() -> None:
    req = parse_search("Observation", [("subject:Patient.name", "peter")], strict=True)
    c = req.criteria[0]
    assert isinstance(c, Chain) and [t for t, _ in c.targets] == ["Patient"]
    # without a type: every target type that has the parameter
    req = parse_search("Observation", [("subject.name", "peter")], strict=True)
    c = req.criteria[0]
    assert isinstance(c, Chain)
    assert {t for t, _ in c.targets} == {"Patient", "Location"}
    # two levels
    req = parse_search("Observation", [("subject:Patient.organization.name", "acme")], strict=True)
    c = req.criteria[0]
    assert isinstance(c, Chain) and isinstance(c.targets[0][1], Chain)
    h = parse_search("Patient", [("_has:Observation:patient:code", "1234-5")], strict=True)
    assert isinstance(h.criteria[0], Has) and h.criteria[0].source_type == "Observation"
    bad("Patient", ("_has:Observation:code:code", "x"))
    bad("Patient", ("_has:Observation", "x"))
    bad("Observation", ("code.name", "x"))


def test_composites() -> None:
    c = one("Observation", "code-value-quantity", "http://loinc.org|8480-6$lt60")
    v = c.values[0]
    assert isinstance(v, CompositeValue)
    assert v.parts[0] == TokenValue("http://loinc.org", "8480-6")
    assert isinstance(v.parts[1], QuantityValue) and v.parts[1].prefix == "lt"
    bad("Observation", ("code-value-quantity", "http://loinc.org|8480-6"))


def test_system_level_and_types() -> None:
    req = parse_search(None, [("_type", "Patient,Observation"), ("_lastUpdated", "gt2020")])
    assert req.types == ("Patient", "Observation") and len(req.criteria) == 1
    bad(None, ("_type", "Nope"))
    # only parameters common to every searched type apply
    req = parse_search(None, [("_type", "Patient,Observation"), ("name", "x")])
    assert not req.criteria and req.warnings
    with pytest.raises(FhirError) as e:
        parse_search("Nope", [])
    assert e.value.status == 404


def test_empty_values_are_ignored() -> None:
    req = parse_search("Patient", [("name", ""), ("gender", ",")])
    assert not req.criteria


def test_in_and_not_in_take_an_enumerable_value_set() -> None:
    vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    c = one("Patient", "gender:in", vs)
    assert c.modifier == "in"
    assert c.values == (
        ValueSetValue(
            vs,
            (
                (
                    "http://hl7.org/fhir/administrative-gender",
                    ("female", "male", "other", "unknown"),
                ),
            ),
        ),
    )
    assert one("Patient", "gender:not-in", vs + "|4.0.1").modifier == "not-in"
    e = bad("Observation", ("code:in", "http://example.org/ValueSet/mine"))
    assert "http://example.org/ValueSet/mine" in str(e)
    assert "not supported" in str(bad("Patient", ("_id:in", vs)))


def test_text_and_content_are_words() -> None:
    c = one("Patient", "_text", "Chalmers  PÉTER")
    assert c.values == (WordsValue(("chalmers", "peter")),)
    c = one("Observation", "_content", "blood pressure,heart")
    assert c.values == (WordsValue(("blood", "pressure")), WordsValue(("heart",)))
    assert "word" in str(bad("Patient", ("_text", "123 4")))
    assert "not supported" in str(bad("Patient", ("_text:exact", "peter")))
    assert "not supported" in str(bad("Patient", ("_content:contains", "pet")))
    assert one("Patient", "_text:missing", "true").missing is True
    # _text is a DomainResource parameter, _content a Resource one
    assert parse_search("Bundle", [("_content", "x1")], strict=True).criteria
    assert "_text" in str(bad("Bundle", ("_text", "x1"), strict=True))


def test_list() -> None:
    req = parse_search("Patient", [("_list", "42,List/a.b-7")], strict=True)
    assert req.criteria == [InList(("42", "a.b-7"))] and req.applied == [("_list", "42,List/a.b-7")]
    assert parse_search(None, [("_list", "42")]).criteria == [InList(("42",))]
    e = bad("Patient", ("_list", "$current-allergies"))
    assert "$current-allergies" in str(e) and e.issues[0].code == "not-supported"
    bad("Patient", ("_list", "not an id"))
    bad("Patient", ("_list:x", "42"))
    assert not parse_search("Patient", [("_list", "")]).criteria


def test_unsupported_parameters_are_what_is_left() -> None:
    assert UNSUPPORTED == {"_query", "_filter", "_containedType"}
    for name in ("_query", "_filter"):
        req = parse_search("Patient", [(name, "x")])
        assert not req.criteria and name in req.warnings[0].diagnostics
        assert name in str(bad("Patient", (name, "x"), strict=True))
    req = parse_search("Patient", [("_text", "x1"), ("_content", "x1"), ("_list", "1")])
    assert len(req.criteria) == 3 and not req.warnings
