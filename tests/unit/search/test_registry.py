"""The search parameter and compartment registries built from the official R4 definitions."""

from __future__ import annotations

import json

import pytest

from resources import build_search_data
from resources.compartments import (
    compartment_params,
    compartment_resource_types,
    is_compartment_type,
)
from resources.search_parameters import (
    all_search_params,
    common_search_params,
    resource_types,
    search_param_by_url,
    search_params_for,
    summary_elements,
)
from tests.unit.search.support import SHARED_DATA

DEFINITIONS = SHARED_DATA / "fhir-r4-definitions"


def test_all_r4_parameters_and_types_are_there() -> None:
    assert len(all_search_params()) == 1375
    assert len(resource_types()) == 146
    assert resource_types()["Bundle"] == "Resource"
    assert resource_types()["Patient"] == "DomainResource"


def test_patient_parameters_include_the_common_ones() -> None:
    p = search_params_for("Patient")
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text"):
        assert code in p, code
    for code in ("name", "family", "birthdate", "identifier", "gender", "general-practitioner"):
        assert code in p, code
    assert p["birthdate"].type == "date"
    assert p["general-practitioner"].target == ("Organization", "Practitioner", "PractitionerRole")
    assert p["name"].modifiers == ("missing", "exact", "contains")
    assert p["_lastUpdated"].expression == "Resource.meta.lastUpdated"


def test_resource_level_types_have_no_domain_resource_parameters() -> None:
    b = search_params_for("Bundle")
    assert "_text" not in b and "_id" in b and "composition" in b
    assert set(common_search_params()) >= {"_id", "_lastUpdated", "_tag", "_profile"}
    assert search_params_for("NotAType") == {}


def test_shared_parameters_and_composites() -> None:
    # clinical-patient is one SearchParameter with many bases
    obs, cond = (
        search_params_for("Observation")["patient"],
        search_params_for("Condition")["patient"],
    )
    assert obs is cond and "Observation" in obs.base and "Condition" in obs.base
    cvq = search_params_for("Observation")["code-value-quantity"]
    assert cvq.type == "composite" and len(cvq.components) == 2
    code_def = search_param_by_url(cvq.components[0][0])
    value_def = search_param_by_url(cvq.components[1][0])
    assert code_def is not None and code_def.type == "token"
    assert value_def is not None and value_def.type == "quantity"
    assert set(obs.comparators) == set() and set(
        search_params_for("Observation")["date"].comparators
    ) >= {
        "eq",
        "ap",
        "sa",
    }


def test_compartments() -> None:
    assert compartment_params("Patient", "Observation") == ("subject", "performer")
    assert compartment_params("Encounter", "Encounter") == ("{def}",)
    assert compartment_params("Patient", "CodeSystem") == ()
    assert "Observation" in compartment_resource_types("Patient")
    assert is_compartment_type("Practitioner") and not is_compartment_type("Observation")
    # the "example" CompartmentDefinition shares code Device but is not the Device compartment
    assert "Account" in compartment_resource_types("Device")


def test_summary_elements() -> None:
    s = summary_elements("Patient")
    assert {"id", "meta", "name", "birthDate", "deceased[x]"} <= s
    assert "contact" not in s and "text" not in s


@pytest.mark.skipif(not DEFINITIONS.exists(), reason="official definitions not present")
def test_committed_data_matches_the_official_definitions() -> None:
    """resources/data is generated: rerunning the build gives what is committed."""
    data = build_search_data.DATA_DIR
    built = build_search_data.build_search_parameters(DEFINITIONS)
    assert json.loads((data / "search-parameters.json").read_text()) == built
    built_c = build_search_data.build_compartments(DEFINITIONS)
    assert json.loads((data / "compartments.json").read_text()) == built_c
    built_s = build_search_data.build_summary_elements(DEFINITIONS)
    assert json.loads((data / "summary-elements.json").read_text()) == built_s
