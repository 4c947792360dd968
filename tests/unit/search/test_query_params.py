"""Search parameter types against a real database (SQLite and PostgreSQL), asserting result
sets on the official R4 examples (https://hl7.org/fhir/R4/search.html#ptypes)."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.store.base import ResourceStore
from tests.unit.search.support import ids

EX = "_lastUpdated=lt2021"  # only the official examples, not the Synthea patients
OBS_EXAMPLE = {
    "abdo-tender",
    "alcohol-type",
    "blood-pressure",
    "blood-pressure-cancel",
    "blood-pressure-dar",
    "bmi",
    "bmi-using-related",
    "body-height",
    "body-length",
    "body-temperature",
    "clinical-gender",
    "example",
    "example-TPMT-diplotype",
    "example-TPMT-haplotype-one",
    "example-TPMT-haplotype-two",
    "example-genetics-1",
    "example-genetics-2",
    "example-genetics-3",
    "example-genetics-4",
    "example-genetics-5",
    "eye-color",
    "gcs-qa",
    "glasgow",
    "head-circumference",
    "heart-rate",
    "map-sitting",
    "mbp",
    "respiratory-rate",
    "satO2",
    "vitals-panel",
}
OBS_F001 = {"f001", "f002", "f003", "f004", "f005", "ekg", "unsat"}


def test_id_and_last_updated(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", "_id=example,f001,nope") == {"example", "f001"}
    assert len(ids(s, "Patient", EX)) == 22
    assert len(ids(s, "Patient", "_lastUpdated=ge2023")) == 3
    assert ids(s, "Patient", "_lastUpdated=2020-09-13T12:26:40Z&_id=example,f001") <= {
        "example",
        "f001",
    }


def test_strings(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", "family=notsowell") == {"pat3", "pat4"}
    assert ids(s, "Patient", "family=NOTSO") == {"pat3", "pat4"}
    assert ids(s, "Patient", "name=peter") == {"example"}
    assert ids(s, "Patient", "family=van de") == {"f001"}
    assert ids(s, "Patient", "name:exact=Chalmers") == {"example"}
    assert ids(s, "Patient", "name:exact=chalmers") == set()
    assert ids(s, "Patient", "name:contains=owel") == {"pat3", "pat4"}
    assert ids(s, "Patient", "given=leia,jacen") == {"infant-mom", "infant-twin-2"}
    # AND across repeats: both names
    assert ids(s, "Patient", "name=solo&name=organa") == {"infant-mom"}
    assert ids(s, "Organization", "name=burgers") == {"f001", "f002", "f003"}
    assert ids(s, "Organization", "name:contains=UMC") == {"f002", "f003", "f201", "f203"}


def test_tokens(search_store: ResourceStore) -> None:
    s = search_store
    female = {
        "animal",
        "genetics-example1",
        "infant-mom",
        "infant-twin-1",
        "mom",
        "pat4",
        "proband",
    }
    assert ids(s, "Patient", f"gender=female&{EX}") == female
    assert ids(s, "Patient", "identifier=urn:oid:0.1.2.3.4.5.6.7|654321") == {"pat1"}
    assert ids(s, "Patient", "identifier=654321") == {"pat1"}
    assert ids(s, "Patient", "identifier=|AB60001") == {"ihe-pcd"}
    assert ids(s, "Patient", "identifier=urn:oid:0.1.2.3.4.5.6.7|") == {
        "pat1",
        "pat2",
        "pat3",
        "pat4",
    }
    not_male = ids(s, "Patient", f"gender:not=male&{EX}")
    assert not_male == female | {"pat2", "ihe-pcd"}
    assert ids(s, "Patient", "deceased=true") == {"pat3", "pat4"}
    assert ids(s, "Patient", f"active:missing=true&{EX}") == {
        "infant-fetal",
        "infant-mom",
        "infant-twin-1",
        "infant-twin-2",
        "newborn",
    }
    assert ids(s, "Observation", "code=http://loinc.org|8302-2&subject=Patient/example") == {
        "body-height",
        "body-length",
    }
    assert ids(s, "Observation", "code=http://loinc.org|8310-5,http://acme.lab|BT") == {
        "body-temperature",
        "f202",
    }
    assert ids(s, "Observation", f"status=cancelled,entered-in-error&{EX}") == {
        "blood-pressure-cancel",
        "unsat",
        "f202",
    }
    assert ids(s, "Condition", "code:text=burnt") == {"example"}
    assert ids(s, "Observation", "code:text=body h&subject=Patient/example") == {
        "body-height",
        "body-length",  # its second coding's display is "Body height"
    }
    of_type = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345"
    assert ids(s, "Patient", of_type) == {"example", "xcda"}


def test_dates(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", "birthdate=1974-12-25") == {"example", "ch-example"}
    assert ids(s, "Patient", "birthdate=1974") == {"example", "ch-example"}
    assert ids(s, "Patient", f"birthdate=lt1950&{EX}") == {"f001", "glossy", "xcda"}
    assert ids(s, "Patient", f"birthdate=ge2017&{EX}") == {
        "infant-twin-1",
        "infant-twin-2",
        "newborn",
    }
    assert ids(s, "Patient", f"birthdate=gt2017-05-15&{EX}") == {"newborn"}
    assert ids(s, "Patient", f"birthdate=le2017-05-15&birthdate=ge2017-05&{EX}") == {
        "infant-twin-1",
        "infant-twin-2",
    }
    assert ids(s, "Patient", f"birthdate=sa1995-10-12&birthdate=eb2017-06&{EX}") == {
        "animal",
        "infant-twin-1",
        "infant-twin-2",
    }
    with_birthdate = ids(s, "Patient", f"birthdate:missing=false&{EX}")
    assert ids(s, "Patient", f"birthdate=ne1974-12-25&{EX}") == with_birthdate - {
        "example",
        "ch-example",
    }
    assert {"example", "ch-example"} <= ids(s, "Patient", f"birthdate=ap1974-12-25&{EX}")
    # Periods: 2013-04-02T10:30+01:00 .. 2013-04-05T10:30+01:00, f001 has an open end
    assert ids(s, "Observation", "date=ge2013-04-04&subject=Patient/f001") == OBS_F001
    assert ids(s, "Observation", "date=eb2013-04-06&subject=Patient/f001") == {
        "f002",
        "f003",
        "f004",
        "f005",
        "unsat",
    }
    assert ids(s, "Observation", "date=sa2013-04-05&subject=Patient/f001") == {"ekg"}
    assert ids(s, "Observation", "date=2013-04-05&subject=Patient/f001") == {"f005"}
    assert ids(s, "Observation", "date=2013-04-05T09:30:10Z&subject=Patient/f001") == {"f005"}
    assert ids(s, "Observation", "date=lt2013-04-02T09:30:00%2B01:00&subject=Patient/f001") == set()


def test_references(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Observation", "subject=Patient/f001") == OBS_F001
    assert ids(s, "Observation", "subject=f001") == OBS_F001
    assert ids(s, "Observation", "subject:Patient=f001") == OBS_F001
    assert ids(s, "Observation", "patient=f001") == OBS_F001
    assert ids(s, "Observation", "patient=Patient/f001,Patient/f201") == OBS_F001 | {
        "f202",
        "f203",
        "f204",
        "f205",
        "f206",
    }
    assert ids(s, "Observation", "subject=Group/herd1") == {"herd1"}
    assert ids(s, "Observation", "patient=Group/herd1") == set()  # resolve() is Patient
    assert ids(s, "Patient", "organization=Organization/1") == {
        "ch-example",
        "dicom",
        "example",
        "pat1",
        "pat2",
        "pat3",
        "pat4",
    }
    assert ids(s, "Observation", "subject=Patient/example") == OBS_EXAMPLE
    apgar = {f"{n}minute-apgar-score" for n in (1, 2, 5, 10, 20)}  # contained subjects
    assert ids(s, "Observation", f"subject:missing=true&{EX}") == {"decimal", "vp-oyster"} | apgar
    # the version of a reference does not matter
    assert ids(s, "Observation", "subject=Patient/f001/_history/9") == OBS_F001
    # canonical references (here a relative one) match by URL and by type/id
    assert ids(s, "QuestionnaireResponse", "questionnaire=Questionnaire/gcs") == {"gcs"}
    assert ids(s, "QuestionnaireResponse", "questionnaire:Questionnaire=gcs") == {"gcs"}


def test_quantities_with_units(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Observation", "value-quantity=185|http://unitsofmeasure.org|[lb_av]") == {
        "example"
    }
    # 185 [lb_av] is 83.9 kg: compared in canonical units
    assert ids(s, "Observation", "value-quantity=83.9|http://unitsofmeasure.org|kg") == {"example"}
    assert ids(s, "Observation", "value-quantity=gt40||cm&subject=Patient/example") == {
        "head-circumference",
        "body-height",
    }
    assert ids(s, "Observation", f"value-quantity=le5||{{score}}&{EX}") == {
        "1minute-apgar-score",
        "2minute-apgar-score",
    }
    assert ids(s, "Observation", "value-quantity=820|urn:iso:std:iso:11073:10101|265201") == {"656"}
    assert ids(s, "Observation", "value-quantity=ap80|http://unitsofmeasure.org|mm[Hg]") == {"mbp"}
    assert ids(s, "Observation", "value-quantity=ne44&subject=Patient/example") >= {"mbp"}
    assert "heart-rate" not in ids(s, "Observation", "value-quantity=ne44&subject=Patient/example")


def test_composites(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(
        s,
        "Observation",
        f"code-value-quantity=http://loinc.org|8302-2$gt60|http://unitsofmeasure.org|[in_i]&{EX}",
    ) == {"body-height"}
    # Synthea heights are in cm: 60 [in_i] is 152.4 cm
    tall = ids(s, "Observation", "code-value-quantity=http://loinc.org|8302-2$gt152.4||cm")
    assert tall == ids(s, "Observation", "code-value-quantity=http://loinc.org|8302-2$gt60||[in_i]")
    assert len(tall) > 10
    bp = "component-code-value-quantity=http://loinc.org|8480-6$gt100"
    assert ids(s, "Observation", f"{bp}&{EX}") == {
        "blood-pressure",
        "blood-pressure-dar",
    }
    bp60 = "component-code-value-quantity=http://loinc.org|8462-4$60"
    assert ids(s, "Observation", f"{bp60}&{EX}") == {"blood-pressure"}
    # the values must come from the same component: systolic 107 and diastolic 60
    bp107 = "component-code-value-quantity=http://loinc.org|8462-4$107"
    assert ids(s, "Observation", f"{bp107}&{EX}") == set()


def test_or_and_semantics(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", "_id=pat1,pat2,pat3&gender=male") == {"pat1", "pat3"}
    assert ids(s, "Patient", "_id=pat1,pat2,pat3&gender=male,other") == {"pat1", "pat2", "pat3"}
    assert ids(s, "Patient", "_id=pat1,pat2,pat3&gender=male&gender=other") == set()


def test_unknown_parameters_are_ignored_unless_strict(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", "_id=pat1&foo=bar") == {"pat1"}
    with pytest.raises(FhirError) as e:
        ids(s, "Patient", "_id=pat1&foo=bar", strict=True)
    assert e.value.status == 400
