"""Structure validation against the R4 definitions (https://hl7.org/fhir/R4/validation.html):
every official example and Synthea resource is valid, and each kind of bad input is caught."""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from resources import build_definitions
from resources.structure import DATA_DIR, registry
from resources.types import RESOURCE_TYPES, is_resource_type
from resources.validation import ValidationIssue, validate_resource

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
EXAMPLES = SHARED / "fhir-r4-examples"
SYNTHEA = SHARED / "synthea-r4-smart"
DEFINITIONS = SHARED / "fhir-r4-definitions"

# Official examples that are invalid per the R4 StructureDefinitions, with the reason.
KNOWN_INVALID = {
    # Questionnaire.item.linkId is 1..1, but 32 nested `display` items have no linkId.
    "Questionnaire-qs1.json": {("required", "Missing required element 'linkId'")},
}


def _files(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.glob("*.json"))
    assert names, f"no test data in {folder}: is ../shared/data beside the repository?"
    return names


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _errors(resource: object) -> list[tuple[str, str]]:
    return [(i.code, i.expression) for i in validate_resource(resource)]


# --- the type registry ---


def test_all_r4_resource_types_are_known() -> None:
    assert len(RESOURCE_TYPES) == 146
    assert {"Patient", "Observation", "Bundle", "Parameters", "Binary"} <= RESOURCE_TYPES
    assert is_resource_type("Patient")
    assert not is_resource_type("patient")
    assert not is_resource_type("Resource")  # abstract
    assert not is_resource_type("HumanName")  # a datatype


def test_registry_loads_once_across_threads() -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(registry())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in seen}) == 1


def test_generated_data_is_reproducible(tmp_path: Path) -> None:
    """The committed data files are exactly what the builder makes from the definitions."""
    assert build_definitions.main([str(DEFINITIONS), str(tmp_path)]) == 0
    for name in (
        "structures.json.gz",
        "valuesets-required.json.gz",
        "valuesets-enumerable.json.gz",
        "code-systems.json",
    ):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name


def test_not_enumerable_value_sets_are_recorded_not_checked() -> None:
    assert "http://hl7.org/fhir/ValueSet/mimetypes" in registry().not_checkable
    resource = {"resourceType": "Binary", "contentType": "application/x-anything"}
    assert validate_resource(resource) == []


# --- valid inputs ---


@pytest.mark.parametrize("name", _files(EXAMPLES))
def test_official_example_is_valid(name: str) -> None:
    issues = validate_resource(_load(EXAMPLES / name))
    if name in KNOWN_INVALID:
        assert issues
        assert {(i.code, i.diagnostics) for i in issues} == KNOWN_INVALID[name]
    else:
        assert issues == []


@pytest.mark.parametrize("name", _files(SYNTHEA))
def test_synthea_bundle_resources_are_valid(name: str) -> None:
    bundle = _load(SYNTHEA / name)
    for entry in bundle["entry"]:
        assert validate_resource(entry["resource"]) == [], entry["fullUrl"]
    assert validate_resource(bundle) == []


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Patient", "id": "a-B.9", "birthDate": "2000-02-29"},
        {"resourceType": "Patient", "birthDate": "2024"},
        {"resourceType": "Patient", "deceasedDateTime": "2016-12-31T23:59:60Z"},
        {"resourceType": "Patient", "deceasedDateTime": "2020-01-01T10:00:00.123+14:00"},
        {
            "resourceType": "Patient",
            "name": [{"given": ["a", None], "_given": [None, {"id": "x"}]}],
        },
        {
            "resourceType": "Patient",
            "_birthDate": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                        "valueCode": "unknown",
                    }
                ]
            },
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueTime": "23:59:59",
        },
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [
                {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}
            ],
        },
        {"resourceType": "Patient", "photo": [{"data": "aGVs\nbG8=", "size": 0}]},
        {"resourceType": "Patient", "multipleBirthInteger": -2147483648},
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://example.org/local", "code": "x"},
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    },
                ]
            },
        },
    ],
)
def test_valid_edge_cases(resource: dict[str, Any]) -> None:
    assert validate_resource(resource) == []


# --- invalid inputs: (resource, expected (code, expression) pairs) ---

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
BAD: list[tuple[str, object, set[tuple[str, str]]]] = [
    ("not an object", ["Patient"], {("structure", "$this")}),
    ("no resourceType", {"id": "1"}, {("required", "$this")}),
    ("unknown resourceType", {"resourceType": "Patientt"}, {("not-supported", "$this")}),
    ("abstract resourceType", {"resourceType": "DomainResource"}, {("not-supported", "$this")}),
    ("unknown element", {"resourceType": "Patient", "foo": 1}, {("structure", "Patient.foo")}),
    (
        "unknown nested element",
        {"resourceType": "Patient", "name": [{"family": "x", "nickname": "y"}]},
        {("structure", "Patient.name[0].nickname")},
    ),
    (
        "resourceType inside a datatype",
        {"resourceType": "Patient", "name": [{"resourceType": "HumanName"}]},
        {("structure", "Patient.name[0].resourceType")},
    ),
    (
        "unknown _element",
        {"resourceType": "Patient", "_foo": {"id": "1"}},
        {("structure", "Patient._foo")},
    ),
    (
        "_ on complex",
        {"resourceType": "Patient", "_name": [{"id": "1"}]},
        {("structure", "Patient._name")},
    ),
    ("bad id chars", {"resourceType": "Patient", "id": "a b"}, {("value", "Patient.id")}),
    ("id too long", {"resourceType": "Patient", "id": "a" * 65}, {("value", "Patient.id")}),
    ("id number", {"resourceType": "Patient", "id": 12}, {("value", "Patient.id")}),
    (
        "string for boolean",
        {"resourceType": "Patient", "active": "true"},
        {("value", "Patient.active")},
    ),
    (
        "number for string",
        {"resourceType": "Patient", "name": [{"family": 1}]},
        {("value", "Patient.name[0].family")},
    ),
    (
        "Feb 30",
        {"resourceType": "Patient", "birthDate": "2020-02-30"},
        {("value", "Patient.birthDate")},
    ),
    (
        "Feb 29 non-leap",
        {"resourceType": "Patient", "birthDate": "1900-02-29"},
        {("value", "Patient.birthDate")},
    ),
    (
        "month 13",
        {"resourceType": "Patient", "birthDate": "2020-13-01"},
        {("value", "Patient.birthDate")},
    ),
    (
        "Apr 31",
        {"resourceType": "Patient", "deceasedDateTime": "2020-04-31"},
        {("value", "Patient.deceasedDateTime")},
    ),
    (
        "date with time",
        {"resourceType": "Patient", "birthDate": "2020-01-01T00:00:00Z"},
        {("value", "Patient.birthDate")},
    ),
    (
        "dateTime without zone",
        {"resourceType": "Patient", "deceasedDateTime": "2020-01-01T10:00:00"},
        {("value", "Patient.deceasedDateTime")},
    ),
    ("instant without time", {**OBS, "issued": "2020-01-01"}, {("value", "Observation.issued")}),
    ("bad time", {**OBS, "valueTime": "24:00:00"}, {("value", "Observation.valueTime")}),
    (
        "decimal as string",
        {**OBS, "valueQuantity": {"value": "1.5"}},
        {("value", "Observation.valueQuantity.value")},
    ),
    ("integer as float", {**OBS, "valueInteger": 1.5}, {("value", "Observation.valueInteger")}),
    (
        "integer overflow",
        {"resourceType": "Patient", "multipleBirthInteger": 2**31},
        {("value", "Patient.multipleBirthInteger")},
    ),
    ("boolean for integer", {**OBS, "valueInteger": True}, {("value", "Observation.valueInteger")}),
    (
        "negative unsignedInt",
        {"resourceType": "Patient", "photo": [{"size": -1}]},
        {("value", "Patient.photo[0].size")},
    ),
    (
        "bad base64",
        {"resourceType": "Patient", "photo": [{"data": "@@@="}]},
        {("value", "Patient.photo[0].data")},
    ),
    (
        "uri with space",
        {"resourceType": "Patient", "identifier": [{"system": "a b"}]},
        {("value", "Patient.identifier[0].system")},
    ),
    (
        "code with trailing space",
        {"resourceType": "Patient", "gender": "male "},
        {("value", "Patient.gender")},
    ),
    (
        "empty string",
        {"resourceType": "Patient", "name": [{"family": ""}]},
        {("value", "Patient.name[0].family")},
    ),
    (
        "empty string in array",
        {"resourceType": "Patient", "name": [{"given": ["a", ""]}]},
        {("value", "Patient.name[0].given[1]")},
    ),
    ("null", {"resourceType": "Patient", "gender": None}, {("structure", "Patient.gender")}),
    (
        "null complex",
        {"resourceType": "Patient", "maritalStatus": None},
        {("structure", "Patient.maritalStatus")},
    ),
    (
        "null in array",
        {"resourceType": "Patient", "name": [{"given": ["a", None]}]},
        {("structure", "Patient.name[0].given[1]")},
    ),
    ("empty array", {"resourceType": "Patient", "name": []}, {("structure", "Patient.name")}),
    ("empty object", {"resourceType": "Patient", "name": [{}]}, {("structure", "Patient.name[0]")}),
    (
        "empty object singleton",
        {"resourceType": "Patient", "maritalStatus": {}},
        {("structure", "Patient.maritalStatus")},
    ),
    (
        "array for singleton",
        {"resourceType": "Patient", "birthDate": ["2000-01-01"]},
        {("structure", "Patient.birthDate")},
    ),
    (
        "too many values",
        {"resourceType": "Patient", "gender": ["male", "female"]},
        {("structure", "Patient.gender")},
    ),
    (
        "object for array",
        {"resourceType": "Patient", "name": {"family": "x"}},
        {("structure", "Patient.name")},
    ),
    (
        "string for object",
        {"resourceType": "Patient", "maritalStatus": "M"},
        {("structure", "Patient.maritalStatus")},
    ),
    (
        "missing required",
        {"resourceType": "Observation"},
        {("required", "Observation.status"), ("required", "Observation.code")},
    ),
    (
        "missing required choice",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/1"},
        },
        {("required", "MedicationRequest.medication")},
    ),
    (
        "missing required in backbone",
        {"resourceType": "Patient", "link": [{"type": "seealso"}]},
        {("required", "Patient.link[0].other")},
    ),
    (
        "two choice values",
        {**OBS, "valueString": "a", "valueQuantity": {"value": 1}},
        {("structure", "Observation.value")},
    ),
    (
        "choice type not allowed",
        {**OBS, "valueUri": "http://x"},
        {("structure", "Observation.valueUri")},
    ),
    ("bare choice name", {**OBS, "value": "x"}, {("structure", "Observation.value")}),
    (
        "bad gender",
        {"resourceType": "Patient", "gender": "foo"},
        {("code-invalid", "Patient.gender")},
    ),
    ("bad observation status", {**OBS, "status": "done"}, {("code-invalid", "Observation.status")}),
    (
        "bad appointment status",
        {"resourceType": "Appointment", "status": "maybe", "participant": [{"status": "accepted"}]},
        {("code-invalid", "Appointment.status")},
    ),
    (
        "bad appointment participant status",
        {"resourceType": "Appointment", "status": "booked", "participant": [{"status": "yes"}]},
        {("code-invalid", "Appointment.participant[0].status")},
    ),
    (
        "bad encounter status",
        {"resourceType": "Encounter", "status": "open", "class": {"code": "AMB"}},
        {("code-invalid", "Encounter.status")},
    ),
    (
        "bad medication request intent",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "wish",
            "subject": {"reference": "Patient/1"},
            "medicationCodeableConcept": {"text": "aspirin"},
        },
        {("code-invalid", "MedicationRequest.intent")},
    ),
    (
        "CodeableConcept with no coding from the value set",
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": {
                "coding": [{"system": "http://snomed.info/sct", "code": "55561003"}]
            },
        },
        {("code-invalid", "Condition.clinicalStatus")},
    ),
    (
        "CodeableConcept text only under a required binding",
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"text": "active"},
        },
        {("code-invalid", "Condition.clinicalStatus")},
    ),
    (
        "bad code in array",
        {"resourceType": "Patient", "telecom": [{"system": "pager"}, {"system": "fax2"}]},
        {("code-invalid", "Patient.telecom[1].system")},
    ),
    (
        "bad contained resource",
        {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "name": 3}]},
        {("value", "Patient.contained[0].ofType(Organization).name")},
    ),
    (
        "unknown contained resourceType",
        {"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]},
        {("not-supported", "Patient.contained[0]")},
    ),
    (
        "contained not an object",
        {"resourceType": "Patient", "contained": ["x"]},
        {("structure", "Patient.contained[0]")},
    ),
    (
        "bad resource in a Bundle entry",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": {"resourceType": "Patient"}},
                {"resource": {"resourceType": "Patient", "gender": "x"}},
            ],
        },
        {("code-invalid", "Bundle.entry[1].resource.ofType(Patient).gender")},
    ),
    (
        "bad resource in Parameters",
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "birthDate": "x"}}],
        },
        {("value", "Parameters.parameter[0].resource.ofType(Patient).birthDate")},
    ),
    (
        "contentReference: Questionnaire.item.item",
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"type": "bogus", "foo": 1}]}],
        },
        {
            ("code-invalid", "Questionnaire.item[0].item[0].type"),
            ("structure", "Questionnaire.item[0].item[0].foo"),
            ("required", "Questionnaire.item[0].item[0].linkId"),
        },
    ),
    (
        "extension without url",
        {"resourceType": "Patient", "extension": [{"valueString": "x"}]},
        {("required", "Patient.extension[0].url")},
    ),
    (
        "extension with value and extensions",
        {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": "http://x",
                    "valueString": "x",
                    "extension": [{"url": "y", "valueCode": "z"}],
                }
            ],
        },
        {("invariant", "Patient.extension[0]")},
    ),
    (
        "extension with neither",
        {"resourceType": "Patient", "modifierExtension": [{"url": "http://x"}]},
        {("invariant", "Patient.modifierExtension[0]")},
    ),
    (
        "bad extension value",
        {"resourceType": "Patient", "extension": [{"url": "http://x", "valueDate": "2020-02-31"}]},
        {("value", "Patient.extension[0].valueDate")},
    ),
    (
        "primitive extension without url",
        {"resourceType": "Patient", "_birthDate": {"extension": [{"valueCode": "unknown"}]}},
        {("required", "Patient.birthDate.extension[0].url")},
    ),
    (
        "primitive extension not an object",
        {"resourceType": "Patient", "_birthDate": "x"},
        {("structure", "Patient.birthDate")},
    ),
    (
        "primitive extension array for singleton",
        {"resourceType": "Patient", "_birthDate": [{"id": "1"}]},
        {("structure", "Patient.birthDate")},
    ),
    (
        "misaligned primitive extension arrays",
        {"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [None]}]},
        {("structure", "Patient.name[0].given")},
    ),
    (
        "null on both sides",
        {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, None]}]},
        {("structure", "Patient.name[0].given[1]")},
    ),
    (
        "narrative div not a div",
        {"resourceType": "Patient", "text": {"status": "generated", "div": "hello"}},
        {("value", "Patient.text.div")},
    ),
    (
        "narrative div not well-formed",
        {"resourceType": "Patient", "text": {"status": "generated",
                                             "div": "<div><p>unclosed</div>"}},
        {("value", "Patient.text.div")},
    ),
    (
        "narrative div with an undeclared entity",
        {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>&nbsp;</div>"}},
        {("value", "Patient.text.div")},
    ),
    (
        "narrative without div",
        {"resourceType": "Patient", "text": {"status": "generated"}},
        {("required", "Patient.text.div")},
    ),
    (
        "narrative bad status",
        {"resourceType": "Patient", "text": {"status": "done", "div": "<div>x</div>"}},
        {("code-invalid", "Patient.text.status")},
    ),
    (
        "meta lastUpdated bad",
        {"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01"}},
        {("value", "Patient.meta.lastUpdated")},
    ),
]


@pytest.mark.parametrize(("resource", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_reported(resource: object, expected: set[tuple[str, str]]) -> None:
    before = copy.deepcopy(resource)
    issues = validate_resource(resource)
    assert set(_errors(resource)) == expected
    assert all(i.severity == "error" and i.diagnostics for i in issues)
    assert resource == before  # validation never changes its input


def test_every_problem_is_reported_not_only_the_first() -> None:
    resource = {"resourceType": "Patient", "foo": 1, "gender": "x", "birthDate": "2020-02-30"}
    assert set(_errors(resource)) == {
        ("structure", "Patient.foo"),
        ("code-invalid", "Patient.gender"),
        ("value", "Patient.birthDate"),
    }


def test_diagnostics_name_the_problem() -> None:
    (issue,) = validate_resource({"resourceType": "Patient", "gender": "foo"})
    assert "foo" in issue.diagnostics
    assert "http://hl7.org/fhir/ValueSet/administrative-gender" in issue.diagnostics
    (issue,) = validate_resource({"resourceType": "Patient", "birthDate": "2021-02-29"})
    assert "2021-02-29" in issue.diagnostics


def test_absurdly_deep_nesting_is_an_issue_not_a_crash() -> None:
    ext: dict[str, Any] = {"url": "http://x", "valueString": "leaf"}
    for _ in range(5000):
        ext = {"url": "http://x", "extension": [ext]}
    issues = validate_resource({"resourceType": "Patient", "extension": [ext]})
    assert [(i.code, i.expression) for i in issues] == [("too-costly", "$this")]


def test_issue_is_immutable() -> None:
    issue = ValidationIssue("error", "value", "x", "Patient.id")
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.code = "structure"  # type: ignore[misc]
