"""Compiled search expressions agree with fhirpathpy, and handle what fhirpathpy cannot."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import fhirpathpy
import pytest

from fhir_server.search.paths import (
    _MODEL,
    _normalise_for_fhirpathpy,
    compile_expression,
    member_root,
    split_union,
)
from resources.search_parameters import search_params_for
from tests.unit.search.support import EXAMPLES


def _canon(values: list[Any]) -> list[str]:
    def default(x: Any) -> Any:
        if isinstance(x, Decimal):
            return float(x)
        raise TypeError(x)

    return sorted({json.dumps(v, sort_keys=True, default=default) for v in values})


def _example_resources() -> list[dict[str, Any]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        res = json.loads(path.read_text())
        out.append(res)
        if res.get("resourceType") == "Bundle":
            out.extend(e["resource"] for e in res.get("entry", []) if "resource" in e)
    return out


@pytest.mark.skipif(not EXAMPLES.exists(), reason="official examples not present")
def test_fast_paths_agree_with_fhirpathpy_on_every_official_example() -> None:
    compared = 0
    for res in _example_resources():
        rt = str(res.get("resourceType"))
        for sp in search_params_for(rt).values():
            if not sp.expression or sp.type == "composite":
                continue
            compiled = compile_expression(sp.expression, rt)
            if compiled is None:
                continue
            members = [
                m
                for m in split_union(sp.expression)
                if member_root(m) in (rt, "Resource", "DomainResource")
            ]
            if not members or any("resolve()" in m for m in members):
                continue
            expr = " | ".join(_normalise_for_fhirpathpy(m, rt) for m in members)
            expected = fhirpathpy.evaluate(res, expr, model=_MODEL)
            got = [v for _t, v in compiled.extract(res)]
            assert _canon(got) == _canon(expected), (rt, sp.code, res.get("id"))
            compared += 1
    assert compared > 15_000


def test_only_the_deceased_expression_needs_fhirpathpy() -> None:
    slow: set[str] = set()
    for rt in ("Patient", "Observation", "Encounter", "Condition", "Person", "Group"):
        for sp in search_params_for(rt).values():
            if sp.expression and sp.type != "composite":
                compiled = compile_expression(sp.expression, rt)
                if compiled:
                    slow.update(compiled.slow_members)
    assert slow == {"Patient.deceased.exists() and Patient.deceased != false"}
    deceased = compile_expression(
        search_params_for("Patient")["deceased"].expression or "", "Patient"
    )
    assert deceased is not None
    assert deceased.extract({"resourceType": "Patient", "deceasedDateTime": "2020"}) == [
        (None, True)
    ]


def test_choice_types_are_typed_per_branch() -> None:
    c = compile_expression("Observation.effective", "Observation")
    assert c is not None
    assert c.extract({"resourceType": "Observation", "effectivePeriod": {"start": "2020"}}) == [
        ("Period", {"start": "2020"})
    ]
    q = compile_expression(
        "(Observation.value as Quantity) | (Observation.component.value as Quantity)",
        "Observation",
    )
    assert q is not None
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 1},
        "component": [{"valueQuantity": {"value": 2}}, {"valueString": "x"}],
    }
    assert q.extract(obs) == [("Quantity", {"value": 1}), ("Quantity", {"value": 2})]


def test_resolve_is_type_uses_the_reference_string() -> None:
    expr = search_params_for("Observation")["patient"].expression or ""
    c = compile_expression(expr, "Observation")
    assert c is not None
    pat = {"resourceType": "Observation", "subject": {"reference": "Patient/1"}}
    grp = {"resourceType": "Observation", "subject": {"reference": "Group/1"}}
    abs_ = {"resourceType": "Observation", "subject": {"reference": "http://x/fhir/Patient/2"}}
    typed = {"resourceType": "Observation", "subject": {"type": "Patient", "display": "x"}}
    assert c.extract(pat) == [("Reference", {"reference": "Patient/1"})]
    assert c.extract(grp) == []
    assert len(c.extract(abs_)) == 1
    assert len(c.extract(typed)) == 1


def test_where_filters_and_common_parameters() -> None:
    phone = compile_expression("Patient.telecom.where(system='phone')", "Patient")
    assert phone is not None
    p = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
        "meta": {"lastUpdated": "2020-01-01T00:00:00Z", "tag": [{"code": "t"}]},
    }
    assert phone.extract(p) == [("ContactPoint", {"system": "phone", "value": "1"})]
    tag = compile_expression("Resource.meta.tag", "Patient")
    assert tag is not None and tag.extract(p) == [("Coding", {"code": "t"})]
    # a relative expression (R4's InsurancePlan.name is "name | alias")
    ip = compile_expression("name | alias", "InsurancePlan")
    assert ip is not None
    assert ip.extract({"resourceType": "InsurancePlan", "name": "A", "alias": ["B"]}) == [
        ("string", "A"),
        ("string", "B"),
    ]
    assert compile_expression("Patient.name", "Observation") is None
