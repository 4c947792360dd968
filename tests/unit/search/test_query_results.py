"""Sorting, keyset paging, totals, system search, conditional lookups, chains, _has,
compartments and includes on SQLite and PostgreSQL (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.search.engine import SearchEngine, SearchResult
from fhir_server.store.base import ResourceStore
from tests.unit.search.support import ids
from tests.unit.search.test_query_params import EX, OBS_EXAMPLE, OBS_F001

ENGINE = SearchEngine()


def run(s: ResourceStore, res_type: str | None, query: str, **kw: Any) -> SearchResult:
    return ENGINE.search(s, res_type, parse_qsl(query, keep_blank_values=True), **kw)


def bodies(s: ResourceStore, pks: list[int]) -> list[dict[str, Any]]:
    loaded = s.load_bodies(pks)
    return [orjson.loads(loaded[pk].body or b"{}") for pk in pks]


def pages(s: ResourceStore, res_type: str, query: str) -> list[list[int]]:
    """Every page of a search, following next cursors."""
    out = []
    cursor = None
    while True:
        q = query + (f"&_cursor={cursor}" if cursor else "")
        r = run(s, res_type, q)
        out.append(r.pks)
        cursor = r.next_cursor
        if cursor is None:
            return out


def test_sort_by_date_and_string(search_store: ResourceStore) -> None:
    s = search_store
    r = run(s, "Patient", f"birthdate:missing=false&_sort=birthdate&{EX}")
    dates = [p["birthDate"] for p in bodies(s, r.pks)]
    assert dates == sorted(dates) and len(dates) == 17
    r = run(s, "Patient", f"birthdate:missing=false&_sort=-birthdate&{EX}")
    assert [p["birthDate"] for p in bodies(s, r.pks)] == sorted(dates, reverse=True)
    # several keys: family ascending, then birthdate descending; no family sorts last
    r = run(s, "Patient", f"_sort=family,-birthdate&{EX}&_count=100")
    got = [(p["id"]) for p in bodies(s, r.pks)]
    assert got[:4] == ["pat3", "pat4", "example", "pat1"] or got.index("pat4") < got.index("pat3")
    fam = [
        min((n.get("family", "").lower() for n in p.get("name", []) if n.get("family")), default="")
        for p in bodies(s, r.pks)
    ]
    with_family = [f for f in fam if f]
    assert with_family == sorted(with_family)
    assert all(f == "" for f in fam[len(with_family) :])  # missing values last


def test_sort_by_id_and_last_updated(search_store: ResourceStore) -> None:
    s = search_store
    r = run(s, "Patient", f"_sort=_id&{EX}&_count=100")
    got = [p["id"] for p in bodies(s, r.pks)]
    assert got == sorted(got)
    r = run(s, "Patient", "_sort=-_lastUpdated&_count=3")
    assert len(r.pks) == 3
    assert {p["id"] for p in bodies(s, r.pks)} == ids(s, "Patient", "_lastUpdated=ge2023")


@pytest.mark.parametrize(
    "query",
    [
        "_count=7",
        "_count=7&_sort=date",
        "_count=7&_sort=-date,code",
        "_count=13&_sort=value-quantity",
        "_count=50&_sort=-_lastUpdated",
    ],
)
def test_paging_visits_every_match_once(search_store: ResourceStore, query: str) -> None:
    s = search_store
    all_pages = pages(s, "Observation", query)
    flat = [pk for page in all_pages for pk in page]
    total = run(s, "Observation", query).total
    assert total is not None and total > 250
    assert len(flat) == len(set(flat)) == total
    assert all(len(p) == int(query.split("&")[0][7:]) for p in all_pages[:-1])


def test_paging_backwards_returns_the_same_pages(search_store: ResourceStore) -> None:
    s = search_store
    query = "_count=10&_sort=-date"
    forward = []
    r = run(s, "Observation", query)
    forward.append(r.pks)
    for _ in range(3):
        assert r.next_cursor
        r = run(s, "Observation", f"{query}&_cursor={r.next_cursor}")
        forward.append(r.pks)
    back = [r.pks]
    while r.prev_cursor:
        r = run(s, "Observation", f"{query}&_cursor={r.prev_cursor}")
        back.append(r.pks)
    assert list(reversed(back)) == forward
    assert r.prev_cursor is None  # the first page has no previous


def test_paging_does_not_shift_when_others_write(search_store: ResourceStore) -> None:
    """A keyset page starts after the last row seen, whatever was inserted before it."""
    s = search_store
    query = f"_count=5&_sort=_id&{EX}"
    first = run(s, "Patient", query)
    second = run(s, "Patient", f"{query}&_cursor={first.next_cursor}")
    assert not set(first.pks) & set(second.pks)
    assert bodies(s, first.pks)[-1]["id"] < bodies(s, second.pks)[0]["id"]


def test_total_and_count(search_store: ResourceStore) -> None:
    s = search_store
    r = run(s, "Observation", "subject=Patient/f001&_count=2")
    assert r.total == len(OBS_F001) and len(r.pks) == 2
    assert run(s, "Observation", "subject=Patient/f001&_total=none").total is None
    r = run(s, "Observation", "subject=Patient/f001&_summary=count")
    assert r.total == len(OBS_F001) and r.pks == []
    r = run(s, "Observation", "subject=Patient/f001&_count=0")
    assert r.total == len(OBS_F001) and r.pks == [] and r.next_cursor is None
    with pytest.raises(FhirError) as e:
        run(s, "Observation", "_cursor=garbage")
    assert e.value.status == 400
    with pytest.raises(FhirError):
        cur = run(s, "Observation", "_count=1").next_cursor
        run(s, "Observation", f"_count=1&_sort=date,code&_cursor={cur}")


def test_system_level_search(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, None, "_id=f001") >= {"Patient/f001", "Observation/f001", "Encounter/f001"}
    assert ids(s, None, "_type=Patient,Organization&_id=f001") == {
        "Patient/f001",
        "Organization/f001",
    }
    recent = ids(s, None, "_lastUpdated=ge2023&_type=Patient")
    assert len(recent) == 3
    tagged = ids(s, None, "_tag=https://smarthealthit.org/tags|synthea-5-2019&_count=500")
    assert len(tagged) > 300 and all(not t.endswith("/example") for t in tagged)


def test_find_ids_for_conditional_operations(search_store: ResourceStore) -> None:
    s = search_store
    found = ENGINE.find_ids(s, "Patient", "identifier=urn:oid:0.1.2.3.4.5.6.7|654321")
    assert [rid for _pk, rid in found] == ["pat1"]
    found = ENGINE.find_ids(s, "Patient", [("family", "notsowell")])
    assert sorted(rid for _pk, rid in found) == ["pat3", "pat4"]
    assert ENGINE.find_ids(s, "Patient", "family=nobody") == []
    for bad in ("foo=bar", "", "_count=1"):
        with pytest.raises(FhirError) as e:
            ENGINE.find_ids(s, "Patient", bad)
        assert e.value.status == 400


def test_chains(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Observation", "subject:Patient.name=chalmers") == OBS_EXAMPLE
    assert ids(s, "Observation", "subject.name=chalmers") == OBS_EXAMPLE
    assert ids(
        s, "Observation", "patient.identifier=urn:oid:2.16.840.1.113883.2.4.6.3|738472983"
    ) == (OBS_F001)
    # two levels: the patient's managing organisation's name
    assert ids(s, "Observation", "patient.organization.name=burgers") == OBS_F001
    assert ids(s, "Encounter", "subject:Patient.organization.name=burgers") == {
        "f001",
        "f002",
        "f003",
    }
    # chained parameters AND with the others
    assert ids(s, "Observation", "patient.name=chalmers&code=http://loinc.org|8302-2") == {
        "body-height",
        "body-length",
    }


def test_has(search_store: ResourceStore) -> None:
    s = search_store
    assert ids(s, "Patient", f"_has:Observation:patient:code=http://loinc.org|8302-2&{EX}") == {
        "example"
    }
    assert ids(s, "Patient", "_has:Encounter:subject:_id=f001") == {"f001"}
    # nested: patients with an observation whose subject's organisation is named Burgers
    assert ids(
        s, "Patient", "_has:Observation:subject:subject:Patient.organization.name=burgers"
    ) == {"f001"}
    assert ids(s, "Practitioner", "_has:Observation:performer:_id=blood-pressure") == {"example"}


def test_chain_and_has_agree_whether_they_drive_the_search_or_not(
    search_store: ResourceStore,
) -> None:
    """The planner starts from the most selective criterion and probes the others per
    candidate (fhir_server.search.query.driver); each form must find the same resources."""
    s = search_store
    loinc = "http://loinc.org|8302-2"
    has = f"_has:Observation:patient:code={loinc}"
    # a token drives, _has is a per-patient probe
    for gender in ("male", "female"):
        assert ids(s, "Patient", f"gender={gender}&{has}") == (
            ids(s, "Patient", f"gender={gender}") & ids(s, "Patient", has)
        )
    patients = ids(s, "Patient", "_count=1000")
    # an inner criterion that cannot drive (:not) makes _has and the chain probes too
    expected = {p for p in patients
                if ids(s, "Observation", f"patient=Patient/{p}&code:not={loinc}")}
    assert expected and ids(s, "Patient", f"_has:Observation:patient:code:not={loinc}") == expected
    not_male = ids(s, "Patient", "gender:not=male")
    expected_obs: set[str] = set()
    for p in not_male:
        expected_obs |= ids(s, "Observation", f"subject=Patient/{p}")
    assert expected_obs
    assert ids(s, "Observation", "subject:Patient.gender:not=male") == expected_obs
    # a driving chain next to a probing token, and the reverse
    chained = ids(s, "Observation", "subject:Patient.name=chalmers")
    assert ids(s, "Observation", f"subject:Patient.name=chalmers&code={loinc}") == (
        chained & ids(s, "Observation", f"code={loinc}")
    )
    # system level: the target type comes from the reference
    assert ids(s, None, f"_type=Patient,Practitioner&{has}") == {f"Patient/{p}" for p in
                                                                  ids(s, "Patient", has)}


def test_compartments(search_store: ResourceStore) -> None:
    s = search_store
    comp = ("Patient", "f001")
    assert ids(s, "Observation", "", compartment=comp) == OBS_F001
    assert ids(s, "Observation", "code=http://loinc.org|15074-8", compartment=comp) == {
        "f001",
        "unsat",
    }
    everything = ids(s, None, "_count=500", compartment=comp)
    assert {"Observation/f001", "Encounter/f001", "Condition/f001"} <= everything
    assert "Patient/f001" not in everything  # Patient's compartment param is `link`
    assert "Observation/f201" not in everything
    # {def}: the Encounter compartment includes the Encounter itself
    assert "Encounter/f001" in ids(s, None, "", compartment=("Encounter", "f001"))


def test_includes(search_store: ResourceStore) -> None:
    s = search_store

    def types_ids(r: SearchResult, pks: list[int]) -> set[str]:
        return {f"{b['resourceType']}/{b['id']}" for b in bodies(s, pks)}

    r = run(s, "Observation", "_id=f001&_include=Observation:subject")
    assert types_ids(r, r.include_pks) == {"Patient/f001"}
    r = run(s, "Observation", "_id=f001&_include=Observation:subject:Group")
    assert r.include_pks == []
    r = run(s, "Patient", "_id=f001&_revinclude=Encounter:subject")
    assert types_ids(r, r.include_pks) == {"Encounter/f001", "Encounter/f002", "Encounter/f003"}
    r = run(
        s,
        "Observation",
        "_id=f001&_include=Observation:patient&_include:iterate=Patient:organization",
    )
    assert types_ids(r, r.include_pks) == {"Patient/f001", "Organization/f001"}
    r = run(s, "Observation", "_id=f001&_include=Observation:*")
    assert types_ids(r, r.include_pks) >= {"Patient/f001", "Practitioner/f005"}
    # matches are not repeated as includes
    r = run(s, "Observation", "_id=f001,f002&_revinclude=Observation:has-member")
    assert not set(r.include_pks) & set(r.pks)


def test_forged_cursors_are_400(search_store: ResourceStore) -> None:
    import base64
    import json

    def forge(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    s = search_store
    for query, data in [
        ("_sort=date", {"d": "n", "k": ["text-for-a-number", 5]}),
        ("_sort=family", {"d": "n", "k": [5, 5]}),
        ("_sort=date", {"d": "n", "k": [5, 2**70]}),
        ("", {"d": "x", "k": [5]}),
        ("", {"d": "n", "k": ["5"]}),
        ("", {"d": "n", "k": [True]}),
        ("", [1, 2]),
    ]:
        with pytest.raises(FhirError) as e:
            run(s, "Observation", f"{query}&_cursor={forge(data)}")
        assert e.value.status == 400, (query, data)
    assert run(s, "Observation", f"_sort=date&_cursor={forge({'d': 'n', 'k': [0, 5]})}").pks


def test_random_searches_answer_or_400_never_crash(search_store: ResourceStore) -> None:
    """Random parameters, modifiers and values: a result or a 4xx FhirError, nothing else."""
    import random

    from resources.search_parameters import search_params_for

    rng = random.Random(11)
    types = ["Patient", "Observation", "Encounter", "Condition", "Organization", None]
    extra = ["_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total"]
    extra += ["_type", "_has:Observation:patient:code", "subject.name", "patient:Patient.name"]
    mods = ["", ":missing", ":exact", ":contains", ":text", ":not", ":above", ":below", ":in"]
    mods += [":of-type", ":identifier", ":Patient", ":iterate", ":foo", ":"]
    vals = ["", "x", "ge2020", "lt", "5", "5.4||mg", "gt5|http://unitsofmeasure.org|mg", "a|b|c"]
    vals += ["|", "Patient/1", "http://x/y", "true", "ap2020-01-01T10:00:00Z", "1$2", "a,b,,c"]
    vals += ["\\", "%", "_", "'", '"', "1e400", "nan", "Patient/", "2020-02-30", "é" * 300]
    vals += ["Observation:subject", "*", "-date", "date,-code", "0", "-1", "9" * 20, "\x00"]
    for _ in range(400):
        rt = rng.choice(types)
        codes = list(search_params_for(rt or "Patient")) + extra
        params = [
            (rng.choice(codes) + rng.choice(mods), rng.choice(vals))
            for _ in range(rng.randint(1, 3))
        ]
        comp = rng.choice([None, None, ("Patient", "example")])
        try:
            ENGINE.search(search_store, rt, params, strict=rng.random() < 0.3, compartment=comp)
        except FhirError as e:
            assert 400 <= e.status < 500, (rt, params, e)
