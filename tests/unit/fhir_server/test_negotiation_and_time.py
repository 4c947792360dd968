"""Content negotiation (https://hl7.org/fhir/R4/http.html#mime-type) and instant handling."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.negotiation import response_type
from fhir_server.request import FhirRequest
from fhir_server.timeutil import from_http_date, now_us, parse_instant_us, to_instant


def _req(accept: str | None = None, fmt: str | None = None) -> FhirRequest:
    headers = {"accept": accept} if accept else {}
    return FhirRequest("GET", "Patient", [("_format", fmt)] if fmt else [], headers)


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, "application/fhir+json"),
        ("application/fhir+json", None, "application/fhir+json"),
        ("application/json", None, "application/json"),
        ("*/*", None, "application/fhir+json"),
        ("text/html, application/fhir+json;q=0.5", None, "application/fhir+json"),
        ("application/fhir+xml", "json", "application/fhir+json"),
        (None, "application/fhir+json", "application/fhir+json"),
        ("application/fhir+xml", None, "application/fhir+xml"),
        ("application/xml", None, "application/xml"),
        ("text/xml", None, "application/xml"),
        (None, "xml", "application/fhir+xml"),
        (None, "application/fhir xml", "application/fhir+xml"),  # '+' not escaped
        (None, "application/xml+fhir;charset=utf-8", "application/fhir+xml"),
        ("application/fhir+json;q=0.8, application/fhir+xml", None, "application/fhir+xml"),
        ("application/fhir+xml;q=0.5, application/fhir+json;q=0.9", None,
         "application/fhir+json"),
        ("application/fhir+json;q=0, */*", None, "application/fhir+xml"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None,
         "application/xml"),  # a browser
    ],
)
def test_format_is_negotiated(accept: str | None, fmt: str | None, expected: str) -> None:
    assert response_type(_req(accept, fmt)) == expected


def test_an_xml_body_is_answered_in_xml_unless_asked_otherwise() -> None:
    def req(accept: str | None) -> FhirRequest:
        headers = {"content-type": "application/fhir+xml", **({"accept": accept} if accept
                                                                else {})}
        return FhirRequest("POST", "Patient", [], headers, b"<Patient/>")

    assert response_type(req(None)) == "application/fhir+xml"
    assert response_type(req("*/*")) == "application/fhir+xml"
    assert response_type(req("application/fhir+json")) == "application/fhir+json"


@pytest.mark.parametrize(("accept", "fmt"), [("text/turtle", None), (None, "ttl"),
                                              (None, "html"), ("application/fhir+json;q=0",
                                                               None)])
def test_other_formats_get_406(accept: str | None, fmt: str | None) -> None:
    with pytest.raises(FhirError) as err:
        response_type(_req(accept, fmt))
    assert err.value.status == 406


def test_instant_ranges_follow_precision() -> None:
    year = parse_instant_us("2024")
    day = parse_instant_us("2024-02-29")
    assert year and day and year[0] == day[0] - (31 + 28) * 86_400_000_000
    assert day[1] - day[0] == 86_400_000_000 - 1
    sec = parse_instant_us("2024-02-29T10:00:00Z")
    plus = parse_instant_us("2024-02-29T12:00:00+02:00")
    assert sec == plus
    assert parse_instant_us("2023-02-29") is None
    assert parse_instant_us("2024-13") is None
    assert parse_instant_us("yesterday") is None


def test_instants_round_trip_and_increase() -> None:
    a, b = now_us(), now_us()
    assert b > a
    rng = parse_instant_us(to_instant(a))
    assert rng is not None and rng[0] == a
    assert from_http_date("Mon, 23 Nov 2026 19:12:00 GMT") == 1795461120 * 1_000_000
    assert from_http_date("not a date") is None
