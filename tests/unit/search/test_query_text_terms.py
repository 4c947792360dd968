"""Implied code systems, token :in/:not-in, _text, _content and _list against a real database
(SQLite and PostgreSQL; https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.store.base import ResourceStore
from tests.unit.search.support import T0, example, ids, put_all

GENDER = "http://hl7.org/fhir/administrative-gender"
OBS_STATUS = "http://hl7.org/fhir/observation-status"
VS = "http://hl7.org/fhir/ValueSet/"
LOINC = "http://loinc.org"


def patient(
    pid: str, gender: str | None, narrative: str | None = None, **more: Any
) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": pid, **more}
    if gender is not None:
        res["gender"] = gender
    if narrative is not None:
        div = f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>'
        res["text"] = {"status": "generated", "div": div}
    return res


def observation(oid: str, status: str, loinc: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": "Patient/p1"},
    }


def a_list(lid: str, *refs: str) -> dict[str, Any]:
    return {
        "resourceType": "List",
        "id": lid,
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": r}} for r in refs],
    }


@pytest.fixture
def s(store: ResourceStore) -> ResourceStore:
    put_all(
        store,
        [
            patient("p1", "male", "<p>Seen for a <b>burnt</b> ear</p>", name=[{"family": "Roe"}]),
            patient("p2", "female", "<p>Follow-up of the ear &amp; nose</p>"),
            patient("p3", "other", None, name=[{"family": "Burnside", "given": ["Ann"]}]),
            patient("p4", None, "<p>No gender recorded</p>"),
            example("Patient-example"),
            observation("o1", "final", "8310-5", "Body temperature"),
            observation("o2", "preliminary", "8302-2", "Body height"),
            observation("o3", "final", "2339-0", "Glucose"),
            a_list("42", "Patient/p1", "Patient/p3", "Observation/o2", "Patient/gone"),
            a_list("43", "Patient/p2"),
            a_list("44", "Patient/p4"),
        ],
    )
    with store.transaction() as tx:  # List/44 is deleted: its items are no list members
        tx.delete("List", "44", 2, T0 + 60_000_000)
    return store


def test_codes_match_with_their_implied_system(s: ResourceStore) -> None:
    assert ids(s, "Patient", f"gender={GENDER}|male") == ids(s, "Patient", "gender=male")
    assert ids(s, "Patient", f"gender={GENDER}|male") == {"p1", "example"}
    assert ids(s, "Patient", f"gender={GENDER}|") == {"p1", "p2", "p3", "example"}
    assert ids(s, "Patient", "gender=http://other.org/gender|male") == set()
    # |code means a code without a system: a bound code has its value set's system
    assert ids(s, "Patient", "gender=|male") == set()
    assert ids(s, "Patient", f"gender:not={GENDER}|male") == {"p2", "p3", "p4"}
    assert ids(s, "Observation", f"status={OBS_STATUS}|final") == {"o1", "o3"}
    assert ids(s, "Observation", f"status={OBS_STATUS}|final,{OBS_STATUS}|preliminary") == {
        "o1",
        "o2",
        "o3",
    }


def test_in_and_not_in(s: ResourceStore) -> None:
    assert ids(s, "Patient", f"gender:in={VS}administrative-gender") == {
        "p1",
        "p2",
        "p3",
        "example",
    }
    # :not-in also finds resources without a value, like :not
    assert ids(s, "Patient", f"gender:not-in={VS}administrative-gender") == {"p4"}
    vitals = f"{VS}observation-vitalsignresult"
    assert ids(s, "Observation", f"code:in={vitals}") == {"o1", "o2"}
    assert ids(s, "Observation", f"code:not-in={vitals}") == {"o3"}
    assert ids(s, "Observation", f"code:in={vitals}&status=final") == {"o1"}
    # OR across value sets, AND across parameters
    assert ids(s, "Observation", f"status:in={VS}observation-status,{vitals}") == {"o1", "o2", "o3"}
    assert ids(s, "Observation", f"status:not-in={VS}observation-status") == set()
    # chained
    assert ids(s, "Observation", f"subject:Patient.gender:in={VS}administrative-gender") == {
        "o1",
        "o2",
        "o3",
    }
    with pytest.raises(FhirError) as e:
        ids(s, "Observation", "code:in=http://example.org/fhir/ValueSet/mine")
    assert e.value.status == 400 and "http://example.org/fhir/ValueSet/mine" in str(e.value)


def test_text_searches_the_narrative(s: ResourceStore) -> None:
    assert ids(s, "Patient", "_text=ear") == {"p1", "p2"}
    assert ids(s, "Patient", "_text=EAR burnt") == {"p1"}  # every word, any order
    assert ids(s, "Patient", "_text=bur") == {"p1"}  # a word's start
    assert ids(s, "Patient", "_text=urnt") == set()  # not inside a word
    assert ids(s, "Patient", "_text=burnt,nose") == {"p1", "p2"}  # OR
    assert ids(s, "Patient", "_text=ear&_text=nose") == {"p2"}  # AND
    assert ids(s, "Patient", "_text=burnside") == set()  # p3 has no narrative
    assert ids(s, "Patient", "_text=chalmers&gender=male") == {"example"}
    assert ids(s, "Patient", "_text:missing=true") == {"p3"}
    assert ids(s, "Observation", "subject._text=burnt") == {"o1", "o2", "o3"}


def test_content_searches_every_string(s: ResourceStore) -> None:
    assert ids(s, "Patient", "_content=burnside") == {"p3"}
    assert ids(s, "Patient", "_content=ann burn") == {"p3"}
    assert ids(s, "Patient", "_content=burnt") == {"p1"}  # the narrative too
    # a code is a string too (Patient-example's contact is female)
    assert ids(s, "Patient", "_content=female") == {"p2", "example"}
    assert ids(s, "Observation", "_content=body") == {"o1", "o2"}
    assert ids(s, "Observation", "_content=body temp") == {"o1"}
    with pytest.raises(FhirError) as e:  # numbers are no words
        ids(s, "Observation", "_content=8310")
    assert e.value.status == 400 and "word" in str(e.value)
    assert ids(s, None, "_content=body&_type=Observation,Patient") == {
        "Observation/o1",
        "Observation/o2",
    }


def test_list_members(s: ResourceStore) -> None:
    assert ids(s, "Patient", "_list=42") == {"p1", "p3"}
    assert ids(s, "Observation", "_list=42") == {"o2"}
    assert ids(s, None, "_list=42") == {"Patient/p1", "Patient/p3", "Observation/o2"}
    assert ids(s, "Patient", "_list=42,43") == {"p1", "p2", "p3"}
    assert ids(s, "Patient", "_list=42&_list=43") == set()
    assert ids(s, "Patient", "_list=List/42&gender=male") == {"p1"}
    assert ids(s, "Patient", "_list=44") == set()  # deleted
    assert ids(s, "Patient", "_list=nope") == set()
    assert ids(s, "Patient", "_list=42&_sort=-_id&_count=1") == {"p1", "p3"}  # paged
    with pytest.raises(FhirError) as e:
        ids(s, "Patient", "_list=$current-allergies")
    assert e.value.status == 400 and e.value.issues[0].code == "not-supported"


def test_reindex_brings_old_rows_up_to_date(store: ResourceStore) -> None:
    """Rows written before implied systems and words existed: `telefhir reindex` adds them."""
    old = patient("old", "male", "<p>legacy narrative</p>")
    with store.transaction() as tx:
        tx.put("Patient", "old", old, orjson.dumps(old), 1, "POST", T0)
        tx.query("UPDATE idx_token SET system = '' WHERE param = 'gender'")
        tx.query("DELETE FROM idx_string WHERE param IN ('_text', '_content')")
    assert ids(store, "Patient", f"gender={GENDER}|male") == set()
    assert ids(store, "Patient", "_text=legacy") == set()
    list(store.reindex(None))
    assert ids(store, "Patient", f"gender={GENDER}|male") == {"old"}
    assert (
        ids(store, "Patient", "_text=legacy") == ids(store, "Patient", "_content=legacy") == {"old"}
    )
