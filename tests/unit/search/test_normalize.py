"""Value normalisation: dates as ranges, string folding, number precision, UCUM units."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fhir_server.search.normalize import (
    date_range,
    normalize_string,
    parse_decimal,
    precision_range,
)
from fhir_server.search.ucum import canonical


def us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2020", us(2020, 1, 1), us(2021, 1, 1) - 1),
        ("2020-02", us(2020, 2, 1), us(2020, 3, 1) - 1),
        ("2020-12", us(2020, 12, 1), us(2021, 1, 1) - 1),
        ("2020-02-29", us(2020, 2, 29), us(2020, 3, 1) - 1),
        ("2020-02-29T10:00", us(2020, 2, 29, 10), us(2020, 2, 29, 10, 1) - 1),
        ("2020-02-29T10:00:05Z", us(2020, 2, 29, 10, 0, 5), us(2020, 2, 29, 10, 0, 6) - 1),
        ("2020-02-29T10:00:05+02:00", us(2020, 2, 29, 8, 0, 5), us(2020, 2, 29, 8, 0, 6) - 1),
        (
            "2020-02-29T10:00:05.5-01:30",
            us(2020, 2, 29, 11, 30, 5) + 500_000,
            us(2020, 2, 29, 11, 30, 5) + 600_000 - 1,
        ),
        (
            "2020-02-29T10:00:05.123456Z",
            us(2020, 2, 29, 10, 0, 5) + 123_456,
            us(2020, 2, 29, 10, 0, 5) + 123_456,
        ),
    ],
)
def test_date_precision_is_a_range(value: str, low: int, high: int) -> None:
    assert date_range(value) == (low, high)


@pytest.mark.parametrize(
    "value", ["", "20", "2020-13", "2020-02-30", "2020-01-01T10", "yesterday", "2020-01-01T25:00"]
)
def test_bad_dates_raise(value: str) -> None:
    with pytest.raises(ValueError):
        date_range(value)


def test_strings_fold_case_and_accents() -> None:
    assert normalize_string("Müller") == "muller"
    assert normalize_string("  ÉLODIE  Chloé ") == "elodie chloe"
    assert normalize_string("STRASSE") == "strasse"
    assert len(normalize_string("x" * 1000)) == 256


def test_number_precision() -> None:
    assert precision_range(Decimal("100")) == (99.5, 100.5)
    assert precision_range(Decimal("100.00")) == (99.995, 100.005)
    assert precision_range(Decimal("1e2")) == (50.0, 150.0)
    with pytest.raises(ValueError):
        parse_decimal("abc")
    with pytest.raises(ValueError):
        parse_decimal("NaN")


@pytest.mark.parametrize(
    ("value", "code", "expected"),
    [
        (5.4, "mg", (0.0054, "g")),
        (100, "mg/dL", (1000.0, "g.m-3")),
        (1, "g/L", (1000.0, "g.m-3")),
        (72, "{beats}/min", (1.2, "s-1")),
        (25, "kg/m2", (25000.0, "g.m-2")),
        (37, "Cel", (310.15, "K")),
        (98.6, "[degF]", (310.15, "K")),
        (120, "mm[Hg]", (15998686.4898, "g.m-1.s-2")),
        (1.5, "m", (1.5, "m")),
        (150, "cm", (1.5, "m")),
    ],
)
def test_ucum_canonical_units(value: float, code: str, expected: tuple[float, str]) -> None:
    assert canonical(value, code) == expected


def test_unknown_units_are_not_canonicalised() -> None:
    assert canonical(1, "furlong") is None
    assert canonical(1, "(mg)") is None
