"""What the server knows of R4 terminology: enumerable value sets and implied code systems."""

from __future__ import annotations

from resources.terminology import implied_system, value_set_expansion


def test_implied_systems_of_bound_codes() -> None:
    assert implied_system("Patient.gender") == "http://hl7.org/fhir/administrative-gender"
    assert implied_system("Observation.status") == "http://hl7.org/fhir/observation-status"
    assert implied_system("Address.use") == "http://hl7.org/fhir/address-use"  # in a datatype
    assert implied_system("Task.intent") is None  # request-intent and task-intent
    assert implied_system("Patient.birthDate") is None
    assert implied_system("Observation.code") is None  # a CodeableConcept, no required binding


def test_enumerable_value_sets() -> None:
    gender = value_set_expansion("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert gender == {
        "http://hl7.org/fhir/administrative-gender": {"male", "female", "other", "unknown"}
    }
    assert value_set_expansion("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    # not bound as required anywhere, still enumerable: explicit SNOMED CT concepts
    laterality = value_set_expansion("http://hl7.org/fhir/ValueSet/bodysite-laterality")
    assert laterality is not None and set(laterality) == {"http://snomed.info/sct"}
    # SNOMED CT below a concept: needs a terminology server
    assert value_set_expansion("http://hl7.org/fhir/ValueSet/body-site") is None
    task = value_set_expansion("http://hl7.org/fhir/ValueSet/task-intent")
    assert task is not None and set(task) == {
        "http://hl7.org/fhir/task-intent",
        "http://hl7.org/fhir/request-intent",
    }
    assert value_set_expansion("http://example.org/ValueSet/unknown") is None
