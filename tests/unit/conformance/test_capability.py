"""The CapabilityStatement's search section against what the search engine really accepts
(https://hl7.org/fhir/R4/capabilitystatement.html, https://hl7.org/fhir/R4/search.html#errors)."""

from __future__ import annotations

from typing import Any

import pytest
from fhirclient.models.capabilitystatement import CapabilityStatement
from flask.testing import FlaskClient

from conformance.capability import capability_statement
from fhir_server.errors import FhirError
from fhir_server.search.indexer import RESOURCE_COLUMN_PARAMS, get_indexer
from fhir_server.search.parse import ENGINE_PARAMS, UNSUPPORTED, parse_search
from resources.search_parameters import SearchParameter, search_param_by_url, search_params_for
from resources.types import RESOURCE_TYPES
from resources.validation import validate_resource

BASE = "http://localhost/fhir"
SIMPLE = {
    "string": "abc",  # _text/_content need a word of 2+ letters
    "token": "http://example.org|a",
    "date": "ge2020-01-01",
    "number": "ge1",
    "quantity": "ge1|http://unitsofmeasure.org|mg",
    "uri": "http://example.org/a",
    "special": "a",
}
COMPONENT = {"token": "a", "date": "2020", "quantity": "1", "number": "1", "string": "a",
             "uri": "http://example.org/a", "reference": "Patient/1"}


def sample_value(sp: SearchParameter) -> str:
    """A well-formed value for a parameter of the type of `sp`."""
    if sp.type == "reference":
        return f"{sp.target[0]}/1" if sp.target else "1"
    if sp.type == "composite":
        comps = [search_param_by_url(url) for url, _ in sp.components]
        return "$".join(COMPONENT[c.type] if c else "a" for c in comps)
    return SIMPLE[sp.type]


def statement() -> dict[str, Any]:
    return capability_statement(BASE)


def resource_entries() -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement()["rest"][0]["resource"]}


def accepts(res_type: str | None, params: list[tuple[str, str]]) -> bool:
    """Whether the parser takes `params` under `Prefer: handling=strict`."""
    try:
        req = parse_search(res_type, params, strict=True, base_url=BASE)
    except FhirError:
        return False
    return not req.warnings


def listed(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entry's parameters that have an R4 SearchParameter definition."""
    return {p["name"]: p for p in entry["searchParam"] if p["name"] not in ENGINE_PARAMS}


def test_list_and_has_are_listed_everywhere_and_accepted() -> None:
    system = {"type": None, "searchParam": statement()["rest"][0]["searchParam"]}
    for entry in [*resource_entries().values(), system]:
        names = {p["name"]: p for p in entry["searchParam"]}
        assert names["_list"]["type"] == names["_has"]["type"] == "special", entry["type"]
    assert accepts("Observation", [("_list", "a1,b2")])
    assert accepts("Patient", [("_has:Observation:patient:code", "http://loinc.org|8867-4")])
    assert not accepts("Patient", [("_list", "$current-allergies")])
    assert not accepts("Patient", [("_has:Observation:nonsense:code", "x")])


def test_word_parameters_claim_only_the_modifier_they_take() -> None:
    patient = {p["name"]: p for p in resource_entries()["Patient"]["searchParam"]}
    for code in ("_text", "_content"):
        assert patient[code]["documentation"].startswith("Modifiers: :missing."), code
        assert accepts("Patient", [(f"{code}:missing", "true")])
        assert not accepts("Patient", [(f"{code}:exact", "smith")])
    assert ":in" not in patient["_id"]["documentation"]


def test_every_listed_parameter_is_accepted_with_a_value_and_with_missing() -> None:
    for res_type, entry in resource_entries().items():
        params = search_params_for(res_type)
        for name, item in listed(entry).items():
            sp = params[name]
            assert item["type"] == sp.type and item["definition"] == sp.url, (res_type, name)
            assert accepts(res_type, [(name, sample_value(sp))]), (res_type, name)
            assert accepts(res_type, [(f"{name}:missing", "true")]), (res_type, name)


def test_no_accepted_parameter_is_missing_from_the_statement() -> None:
    for res_type, entry in resource_entries().items():
        names = set(listed(entry))
        for code, sp in search_params_for(res_type).items():
            accepted = accepts(res_type, [(code, sample_value(sp))])
            assert accepted == (code in names), (res_type, code)
        for code in UNSUPPORTED:
            assert not accepts(res_type, [(code, "a")]) and code not in names


def test_ignored_parameters_are_left_out() -> None:
    patient = listed(resource_entries()["Patient"])
    assert {"name", "birthdate", "general-practitioner", "_id", "_lastUpdated"} <= set(patient)
    assert not UNSUPPORTED & set(patient)
    assert "_query" in search_params_for("Patient") and "_query" not in patient
    assert "near" not in listed(resource_entries()["Location"])
    assert "near" in search_params_for("Location")  # in R4, but not answered
    assert not accepts("Location", [("near", "42.25|-83.69|10|km")])


def test_every_listed_parameter_is_indexed_at_write_time() -> None:
    indexer = get_indexer()
    for res_type, entry in resource_entries().items():
        planned = {p.code for p in indexer.plans(res_type)} | RESOURCE_COLUMN_PARAMS
        assert set(listed(entry)) <= planned, res_type


def test_documentation_names_the_supported_modifiers_and_prefixes() -> None:
    patient = listed(resource_entries()["Patient"])
    assert ":exact" in patient["name"]["documentation"]
    assert ":contains" in patient["name"]["documentation"]
    assert "ge" in patient["birthdate"]["documentation"].split("Prefixes:")[1]
    gp = patient["general-practitioner"]["documentation"]
    assert ":identifier" in gp and ":[type]" in gp and "Chaining" in gp
    assert "Prefixes" not in patient["gender"]["documentation"]


def test_includes_are_accepted_and_complete() -> None:
    for res_type, entry in resource_entries().items():
        for value in entry["searchInclude"]:
            assert accepts(res_type, [("_include", value)]), (res_type, value)
        refs = {c for c, sp in search_params_for(res_type).items() if sp.type == "reference"}
        assert {f"{res_type}:{c}" for c in refs} <= set(entry["searchInclude"])
        for value in entry["searchRevInclude"]:
            assert accepts(res_type, [("_revinclude", value)]), (res_type, value)
    encounter = resource_entries()["Encounter"]
    assert "Encounter:practitioner" in encounter["searchInclude"]
    assert "Observation:encounter" in encounter["searchRevInclude"]
    assert "Observation:encounter" not in resource_entries()["Patient"]["searchRevInclude"]


def test_system_level_parameters_are_accepted() -> None:
    system = {p["name"] for p in statement()["rest"][0]["searchParam"]}
    assert {"_type", "_id", "_lastUpdated", "_tag"} <= system
    for name in system - {"_type"} - set(ENGINE_PARAMS):
        assert accepts(None, [(name + ":missing", "false")]), name


def test_every_resource_type_is_listed() -> None:
    assert set(resource_entries()) == set(RESOURCE_TYPES)


def test_metadata_validates(client: FlaskClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    body = resp.get_json()
    assert validate_resource(body) == []
    CapabilityStatement(body)  # fhirclient parses it strictly
    obs = next(r for r in body["rest"][0]["resource"] if r["type"] == "Observation")
    assert "code-value-quantity" in {p["name"] for p in obs["searchParam"]}


@pytest.mark.parametrize("res_type", ["Patient", "Observation", "Encounter"])
def test_listed_parameters_run_over_http(client: FlaskClient, res_type: str) -> None:
    entry = resource_entries()[res_type]
    params = search_params_for(res_type)
    for name in listed(entry):
        resp = client.get(
            f"/fhir/{res_type}",
            query_string={name: sample_value(params[name])},
            headers={"Prefer": "handling=strict"},
        )
        assert resp.status_code == 200, (name, resp.get_json())
        assert resp.get_json()["total"] == 0
