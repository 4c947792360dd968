"""ValueSet expansion rules of resources.value_sets
(https://hl7.org/fhir/R4/valueset.html#compositions), over the shipped R4 terminology and
resources handed in by a resolver as a server's stored ones are."""

from __future__ import annotations

from typing import Any

import pytest

from resources.value_sets import CannotExpand, Terminology

CS = {"resourceType": "CodeSystem", "url": "urn:cs", "content": "complete", "concept": [
    {"code": "a", "display": "A", "property": [{"code": "kind", "valueCode": "x"}], "concept": [
        {"code": "a1", "display": "A one"}, {"code": "a2", "concept": [{"code": "a2i"}]}]},
    {"code": "b", "property": [{"code": "kind", "valueCode": "y"}]}]}


def _term(*stored: dict[str, Any]) -> Terminology:
    by = {(r["resourceType"], r["url"]): r for r in stored}
    return Terminology(lambda t, u: by.get((t, u)))


def _codes(term: Terminology, compose: dict[str, Any]) -> list[str]:
    return [c.code for c in term.expand({"resourceType": "ValueSet", "compose": compose})]


@pytest.mark.parametrize("flt,codes", [
    ({"property": "concept", "op": "is-a", "value": "a2"}, ["a2", "a2i"]),
    ({"property": "concept", "op": "descendent-of", "value": "a"}, ["a1", "a2", "a2i"]),
    ({"property": "concept", "op": "is-not-a", "value": "a"}, ["b"]),
    ({"property": "concept", "op": "in", "value": "b,a1"}, ["a1", "b"]),
    ({"property": "kind", "op": "=", "value": "y"}, ["b"]),
    ({"property": "code", "op": "regex", "value": "a[0-9]"}, ["a1", "a2"]),
])
def test_filters(flt: dict[str, str], codes: list[str]) -> None:
    assert _codes(_term(CS), {"include": [{"system": "urn:cs", "filter": [flt]}]}) == codes


def test_whole_system_exclude_and_listed_displays() -> None:
    term = _term(CS)
    assert _codes(term, {"include": [{"system": "urn:cs"}],
                         "exclude": [{"system": "urn:cs", "concept": [{"code": "a2i"}]}]}) == [
        "a", "a1", "a2", "b"]
    [c] = term.expand({"compose": {"include": [{"system": "urn:cs", "concept": [
        {"code": "a1", "display": "Own display"}]}]}})
    assert c.display == "Own display"


def test_unknown_systems_and_unsupported_filters_cannot_expand() -> None:
    term = _term(CS)
    with pytest.raises(CannotExpand, match="snomed"):
        _codes(term, {"include": [{"system": "http://snomed.info/sct"}]})
    with pytest.raises(CannotExpand, match="not supported"):
        _codes(term, {"include": [{"system": "urn:cs", "filter": [
            {"property": "concept", "op": "is-a-ish", "value": "a"}]}]})
    # explicit concepts of an unknown system are fine
    assert _codes(term, {"include": [{"system": "http://loinc.org", "concept": [
        {"code": "8867-4"}]}]}) == ["8867-4"]


def test_published_expansion_is_used_when_compose_cannot_be() -> None:
    vs = Terminology().value_set("http://hl7.org/fhir/ValueSet/example-expansion")
    assert vs is not None
    codes = [c.code for c in Terminology().expand(vs)]
    assert len(codes) == 8 and "14647-2" in codes


def test_imports_intersect_with_the_system_part() -> None:
    warm = {"resourceType": "ValueSet", "url": "urn:warm", "compose": {"include": [
        {"system": "urn:cs", "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}]}}
    term = _term(CS, warm)
    assert _codes(term, {"include": [{"valueSet": ["urn:warm"], "system": "urn:cs",
                                      "concept": [{"code": "a1"}, {"code": "b"}]}]}) == ["a1"]
