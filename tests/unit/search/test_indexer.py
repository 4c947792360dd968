"""Index rows computed from resources, per value kind."""

from __future__ import annotations

from typing import Any

from fhir_server.search.indexer import get_indexer
from fhir_server.search.normalize import date_range
from fhir_server.search.schema import DATE_MAX, INDEX_TABLES, NUM_MIN, index_ddl, insert_sql
from fhir_server.search.values import CANONICAL_MARK, parse_reference
from fhir_server.store.dialect import POSTGRESQL, SQLITE
from tests.unit.search.support import example, synthea_resources


def rows(resource: dict[str, Any], table: str, param: str) -> list[tuple[Any, ...]]:
    """Rows of one parameter, without res_type and param."""
    out = get_indexer().rows(resource).get(table, [])
    return [r[2:] for r in out if r[1] == param]


def test_rows_match_the_table_columns() -> None:
    for res in synthea_resources(1) + [example("Patient-example")]:
        for table, table_rows in get_indexer().rows(res).items():
            for row in table_rows:
                assert len(row) == len(INDEX_TABLES[table]), (table, row)
                assert row[0] == res["resourceType"]


def test_patient_example() -> None:
    p = example("Patient-example")
    names = {n for n, _ in rows(p, "idx_string", "name")}
    assert {"chalmers", "peter", "james", "jim", "windsor"} <= names
    assert ("chalmers", "Chalmers") in rows(p, "idx_string", "family")
    # a code gets the system of its binding (https://hl7.org/fhir/R4/search.html#token)
    assert rows(p, "idx_token", "gender") == [
        ("http://hl7.org/fhir/administrative-gender", "male", None)
    ]
    assert ("urn:oid:1.2.36.146.595.217.0.1", "12345", None) in rows(p, "idx_token", "identifier")
    # identifier:of-type rows: type system|code, value
    assert ("http://terminology.hl7.org/CodeSystem/v2-0203|MR", "12345", None) in rows(
        p, "idx_token", "identifier:of-type"
    )
    assert rows(p, "idx_date", "birthdate") == [date_range("1974-12-25")]
    assert ("phone", "(03) 5555 6473", None) in rows(p, "idx_token", "telecom")
    assert ("Organization", "1", None, None, None) in rows(p, "idx_reference", "organization")
    assert ("", "false", None) in rows(p, "idx_token", "deceased")


def test_observation_quantities_and_composites() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Weight"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2020-01-01"},
        "valueQuantity": {
            "value": 185,
            "unit": "lbs",
            "system": "http://unitsofmeasure.org",
            "code": "[lb_av]",
        },
    }
    q = rows(obs, "idx_quantity", "value-quantity")
    assert q == [
        ("http://unitsofmeasure.org", "[lb_av]", "lbs", 185.0, 185.0, "g", 83914.58845, 83914.58845)
    ]
    assert rows(obs, "idx_date", "date") == [(date_range("2020-01-01")[0], DATE_MAX)]
    assert ("Patient", "p1", None, None, None) in rows(obs, "idx_reference", "patient")
    assert ("", "", "weight") in rows(obs, "idx_token", "code")
    cvq = rows(obs, "idx_composite", "code-value-quantity")
    loinc = ("http://loinc.org", "29463-7", None, None)
    rest = (None, None, None, None)
    assert cvq == [
        (*loinc, "http://unitsofmeasure.org", "[lb_av]", 185.0, 185.0, *rest),
        (*loinc, CANONICAL_MARK, "g", 83914.58845, 83914.58845, *rest),
    ]


def test_ranges_and_comparators() -> None:
    cond = {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/1"},
        "onsetAge": {"value": 50, "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementRange": {"low": {"value": 1, "code": "a", "system": "http://unitsofmeasure.org"}},
    }
    assert rows(cond, "idx_quantity", "onset-age") == [
        ("http://unitsofmeasure.org", "a", "", 50.0, 50.0, "s", 1577880000.0, 1577880000.0)
    ]
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "valueQuantity": {"value": 5, "comparator": "<", "code": "mg"},
    }
    assert rows(obs, "idx_quantity", "value-quantity")[0][3:5] == (NUM_MIN, 5.0)


def test_references() -> None:
    assert parse_reference("Patient/1") == ("Patient", "1", None)
    assert parse_reference("Patient/1/_history/2") == ("Patient", "1", None)
    assert parse_reference("http://x.org/fhir/Patient/1/_history/2") == (
        "Patient",
        "1",
        "http://x.org/fhir/Patient/1",
    )
    assert parse_reference("urn:uuid:abc") == (None, None, "urn:uuid:abc")
    assert parse_reference("#contained") is None
    assert parse_reference("Nonsense/1") is None
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "subject": {"identifier": {"system": "urn:mrn", "value": "7"}},
    }
    assert rows(enc, "idx_reference", "subject") == [(None, None, None, "urn:mrn", "7")]


def test_canonical_references_and_uris() -> None:
    qr = {"resourceType": "QuestionnaireResponse", "id": "q", "questionnaire": "http://x/Q/1|2.0"}
    assert rows(qr, "idx_reference", "questionnaire") == [(None, None, "http://x/Q/1", None, None)]
    vs = {"resourceType": "ValueSet", "id": "v", "url": "http://hl7.org/fhir/ValueSet/x"}
    assert rows(vs, "idx_uri", "url") == [("http://hl7.org/fhir/ValueSet/x",)]


def test_unknown_and_odd_input_does_not_raise() -> None:
    ix = get_indexer()
    assert ix.rows({}) == {}
    assert ix.rows({"resourceType": "NotAType"}) == {}
    weird = {
        "resourceType": "Patient",
        "id": "w",
        "birthDate": "not a date",
        "name": [{"family": 5, "given": [None, "A"]}],
        "telecom": "oops",
        "meta": {"lastUpdated": 3},
    }
    out = ix.rows(weird)
    assert "idx_date" not in out
    assert ("Patient", "given", "a", "A") in out["idx_string"]


def test_ddl_for_both_dialects() -> None:
    for d in (SQLITE, POSTGRESQL):
        ddl = index_ddl(d)
        assert len([s for s in ddl if s.startswith("CREATE TABLE")]) == len(INDEX_TABLES)
        assert all("IF NOT EXISTS" in s for s in ddl)
    assert 'COLLATE "C"' in "".join(index_ddl(POSTGRESQL))
    assert (
        insert_sql("idx_uri")
        == "INSERT INTO idx_uri (res_pk, res_type, param, uri) VALUES (?, ?, ?, ?)"
    )


def test_every_parameter_of_every_type_compiles() -> None:
    """All 146 types: every parameter with an expression gets a plan, composites included,
    and so do _text (DomainResource) and _content (Resource), indexed as words."""
    from resources.search_parameters import resource_types, search_params_for

    ix = get_indexer()
    for rt in resource_types():
        planned = {p.code for p in ix.plans(rt)}
        expected = {
            code
            for code, sp in search_params_for(rt).items()
            if sp.expression and code not in ("_id", "_lastUpdated") and sp.type != "special"
        } | ({"_text", "_content"} & set(search_params_for(rt)))
        assert planned == expected, (rt, expected - planned)


def test_percent_resource_in_composite_components() -> None:
    ms = {
        "resourceType": "MolecularSequence",
        "id": "m",
        "referenceSeq": {"chromosome": {"coding": [{"system": "http://x", "code": "1"}]}},
        "variant": [{"start": 10, "end": 20}],
    }
    assert rows(ms, "idx_composite", "chromosome-variant-coordinate") == [
        ("http://x", "1", None, None, None, None, 10.0, 10.0, None, None, 20.0, 20.0)
    ]


def test_malformed_json_never_raises_and_rows_hold_scalars() -> None:
    """Every official example with random leaves swapped for odd JSON values."""
    import json
    import random

    from tests.unit.search.support import EXAMPLES

    odd: list[Any] = [None, 1, 1.5, True, "x", [], {}, [1, "a", None], {"a": 1}, "2020-13-45"]
    rng = random.Random(7)

    def mutate(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: rng.choice(odd) if rng.random() < 0.15 else mutate(v) for k, v in o.items()}
        if isinstance(o, list):
            return [rng.choice(odd) if rng.random() < 0.15 else mutate(v) for v in o]
        return o

    ix = get_indexer()
    for path in sorted(EXAMPLES.glob("*.json")):
        res = json.loads(path.read_text())
        bad = mutate(res)
        bad["resourceType"] = res["resourceType"]
        for table_rows in ix.rows(bad).values():
            for row in table_rows:
                assert all(x is None or isinstance(x, str | int | float) for x in row), row


def test_codes_are_indexed_with_their_implied_system() -> None:
    """A code's system is the one code system of its required binding; a code bound to a
    value set of several systems, or unbound, keeps no system."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert rows(obs, "idx_token", "status") == [
        ("http://hl7.org/fhir/observation-status", "final", None)
    ]
    patient = {
        "resourceType": "Patient",
        "address": [{"use": "home"}],
        "telecom": [{"use": "work"}],
    }
    assert rows(patient, "idx_token", "address-use") == [
        ("http://hl7.org/fhir/address-use", "home", None)
    ]
    task = {"resourceType": "Task", "status": "ready", "intent": "order"}
    assert rows(task, "idx_token", "status") == [("http://hl7.org/fhir/task-status", "ready", None)]
    # Task.intent draws from request-intent and task-intent: no single system
    assert rows(task, "idx_token", "intent") == [("", "order", None)]
    sp = {"resourceType": "SearchParameter", "type": "token", "status": "active"}
    assert rows(sp, "idx_token", "type") == [
        ("http://hl7.org/fhir/search-param-type", "token", None)
    ]


def test_text_and_content_rows_are_words() -> None:
    p = example("Patient-example")
    text = {w for w, exact in rows(p, "idx_string", "_text")}
    assert {"peter", "chalmers", "erewhon", "acme", "healthcare"} <= text
    assert all(exact is None for _, exact in rows(p, "idx_string", "_text"))
    content = {w for w, _ in rows(p, "idx_string", "_content")}
    assert text <= content and {"windsor", "jim", "benedicte", "rainbow"} <= content
    bundle = {"resourceType": "Bundle", "type": "collection", "identifier": {"value": "abc1"}}
    assert rows(bundle, "idx_string", "_content") == [("collection", None), ("abc1", None)]
    assert rows(bundle, "idx_string", "_text") == []  # Bundle is no DomainResource
