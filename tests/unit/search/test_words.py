"""Words indexed for _text (the narrative) and _content (every string of the resource)."""

from __future__ import annotations

from fhir_server.search.words import (
    MAX_CHARS,
    content_words,
    narrative_words,
    query_words,
    words,
)
from tests.unit.search.support import example

NARRATIVE = {
    "status": "generated",
    "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Burnt</b> Ear&amp;Nose, '
    "<span title='ignored attribute'>l&#233;ft</span> side; 2nd time a</p></div>",
}


def test_words_are_distinct_start_with_a_letter_and_have_two_characters() -> None:
    assert words("ear ear 2nd a b12 x_y 1974-12-25 héllo") == ["ear", "b12", "x_y", "héllo"]
    assert query_words("Héllo, WORLD!") == ["hello", "world"]
    assert query_words("12 a") == []


def test_narrative_words_strip_markup_and_entities() -> None:
    res = {"resourceType": "Condition", "text": NARRATIVE}
    assert narrative_words(res) == ["burnt", "ear", "nose", "left", "side", "time"]
    assert narrative_words({"resourceType": "Condition"}) == []
    assert {"peter", "chalmers", "pleasantville"} <= set(
        narrative_words(example("Patient-example"))
    )


def test_content_words_take_strings_but_not_ids_codes_links_or_dates() -> None:
    res = {
        "resourceType": "Observation",
        "id": "obsid",
        "meta": {"profile": ["http://example.org/profileword"]},
        "text": NARRATIVE,
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "codeword", "display": "Body Weight"}]
        },
        "subject": {"reference": "Patient/refword", "display": "Jane Roe"},
        "effectiveDateTime": "2020-01-02T10:00:00Z",
        "note": [{"text": "Patient seemed well"}],
        "component": [{"valueString": "Élan"}],
    }
    found = content_words(res)
    assert {"burnt", "final", "body", "weight", "jane", "roe", "patient", "seemed", "elan"} <= set(
        found
    )
    for word in ("obsid", "profileword", "codeword", "refword", "loinc", "generated"):
        assert word not in found


def test_content_is_capped() -> None:
    many = [f"w{n:05d}" for n in range(2000)]  # 7 characters each with the space
    found = content_words({"resourceType": "Observation", "note": [{"text": " ".join(many)}]})
    assert found == many[: len(found)]
    assert MAX_CHARS // 7 - 2 <= len(found) <= MAX_CHARS // 7 + 1
