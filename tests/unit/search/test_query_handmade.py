"""Parameter kinds the official examples barely exercise (number, uri, meta parameters,
:identifier, Ranges, accents, updates and deletes), on hand-written resources."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.store.base import ResourceStore
from tests.unit.search.support import T0, ids, put_all

RESOURCES: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "accent",
        "meta": {
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ],
            "source": "http://ehr.example.org/feed#42",
            "tag": [{"system": "http://example.org/tags", "code": "vip"}],
        },
        "name": [{"family": "Müller-Lüdenscheidt", "given": ["Zoë"]}],
        "address": [{"city": "Zürich", "postalCode": "8001", "country": "CH"}],
    },
    {
        "resourceType": "Patient",
        "id": "plain",
        "name": [{"family": "Muller", "given": ["Zoe"]}],
        "address": [{"city": "Zug"}],
    },
    {
        "resourceType": "RiskAssessment",
        "id": "r1",
        "status": "final",
        "subject": {"reference": "Patient/plain"},
        "prediction": [{"probabilityDecimal": 0.02}, {"probabilityDecimal": 0.37}],
    },
    {
        "resourceType": "RiskAssessment",
        "id": "r2",
        "status": "final",
        "subject": {"reference": "Patient/accent"},
        "prediction": [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.2}}}],
    },
    {
        "resourceType": "ValueSet",
        "id": "vs1",
        "status": "active",
        "url": "http://example.org/fhir/ValueSet/colors/primary",
    },
    {
        "resourceType": "ValueSet",
        "id": "vs2",
        "status": "active",
        "url": "http://example.org/fhir/ValueSet/colors",
    },
    {
        "resourceType": "ValueSet",
        "id": "vs3",
        "status": "active",
        "url": "http://other.org/ValueSet/colors",
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"identifier": {"system": "urn:mrn", "value": "M-1"}},
        "length": {"value": 90, "system": "http://unitsofmeasure.org", "code": "min"},
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/plain"},
        "length": {"value": 2, "system": "http://unitsofmeasure.org", "code": "h"},
    },
]


def test_accents_and_addresses(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    assert ids(store, "Patient", "family=muller") == {"accent", "plain"}
    assert ids(store, "Patient", "family=Mül") == {"accent", "plain"}
    assert ids(store, "Patient", "family:exact=Muller") == {"plain"}
    assert ids(store, "Patient", "given:exact=Zoë") == {"accent"}
    assert ids(store, "Patient", "address=zurich") == {"accent"}
    assert ids(store, "Patient", "address-city=z") == {"accent", "plain"}
    assert ids(store, "Patient", "family:contains=LUDEN") == {"accent"}
    # LIKE wildcards in the value are literal
    assert ids(store, "Patient", "family:contains=%") == set()
    assert ids(store, "Patient", "family:contains=_") == set()


def test_meta_parameters(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    profile = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    assert ids(store, "Patient", f"_profile={profile}") == {"accent"}
    assert ids(store, "Patient", "_tag=http://example.org/tags|vip") == {"accent"}
    assert ids(store, "Patient", "_tag:not=vip") == {"plain"}
    assert ids(store, "Patient", "_security=R") == {"accent"}
    assert ids(store, "Patient", "_source=http://ehr.example.org/feed#42") == {"accent"}
    assert ids(store, None, "_tag=vip") == {"Patient/accent"}


def test_numbers_and_ranges(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    assert ids(store, "RiskAssessment", "probability=0.37") == {"r1"}
    assert ids(store, "RiskAssessment", "probability=0.4") == {"r1"}  # [0.35, 0.45)
    assert ids(store, "RiskAssessment", "probability=0.40") == set()  # [0.395, 0.405)
    assert ids(store, "RiskAssessment", "probability=gt0.3") == {"r1"}
    assert ids(store, "RiskAssessment", "probability=lt0.05") == {"r1"}
    assert ids(store, "RiskAssessment", "probability=ge0.15") == {"r1", "r2"}  # Range overlaps
    assert ids(store, "RiskAssessment", "probability=ap0.15") == {"r2"}
    assert ids(store, "RiskAssessment", "probability=gt1e-1") == {"r1", "r2"}


def test_uris(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    base = "http://example.org/fhir/ValueSet/colors"
    assert ids(store, "ValueSet", f"url={base}") == {"vs2"}
    assert ids(store, "ValueSet", f"url:below={base}") == {"vs1", "vs2"}
    assert ids(store, "ValueSet", f"url:above={base}/primary/dark") == {"vs1", "vs2"}
    assert ids(store, "ValueSet", "url:below=http://other.org") == {"vs3"}


def test_reference_identifier_and_missing(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    assert ids(store, "Encounter", "subject:identifier=urn:mrn|M-1") == {"e1"}
    assert ids(store, "Encounter", "subject:identifier=M-1") == {"e1"}
    assert ids(store, "Encounter", "subject=Patient/plain") == {"e2"}
    assert ids(store, "Encounter", "subject:missing=false") == {"e1", "e2"}
    assert ids(store, "Encounter", "patient:missing=true") == {"e1"}
    assert ids(store, "Encounter", "class=IMP,AMB") == {"e1", "e2"}
    # Encounter.length: 90 min and 2 h compare in canonical units
    assert ids(store, "Encounter", "length=gt1.6|http://unitsofmeasure.org|h") == {"e2"}
    assert ids(store, "Encounter", "length=90|http://unitsofmeasure.org|min") == {"e1"}
    assert ids(store, "Encounter", "length=1.5|http://unitsofmeasure.org|h") == {"e1"}


def test_updates_and_deletes_change_results(store: ResourceStore) -> None:
    put_all(store, RESOURCES)
    assert ids(store, "Patient", "family=zz") == set()
    renamed = {"resourceType": "Patient", "id": "plain", "name": [{"family": "Zz"}]}
    with store.transaction() as tx:
        tx.put("Patient", "plain", renamed, orjson.dumps(renamed), 2, "PUT", T0 + 10**9)
    assert ids(store, "Patient", "family=zz") == {"plain"}
    assert ids(store, "Patient", "family=muller") == {"accent"}
    with store.transaction() as tx:
        tx.delete("Patient", "plain", 3, T0 + 2 * 10**9)
    assert ids(store, "Patient", "family=zz") == set()
    assert ids(store, "Patient", "") == {"accent"}
    # a search inside a write transaction sees that transaction's writes
    new = {"resourceType": "Patient", "id": "n", "name": [{"family": "Neu"}]}
    with store.transaction() as tx:
        tx.put("Patient", "n", new, orjson.dumps(new), 1, "POST", T0 + 3 * 10**9)
        assert ids(tx, "Patient", "family=neu") == {"n"}
