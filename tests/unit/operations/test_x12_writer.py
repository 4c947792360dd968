"""The 837P writer: envelopes, counts, delimiters, and pyx12 as the independent judge (which
must also fail what is wrong, or the integration tests' checks could not fail)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from operations.billing.x12 import (
    Address,
    Claim837,
    Name,
    ServiceLine,
    amount,
    clean,
    segment,
    write_837p,
)
from tests.integration.x12_check import check_837p, find, pyx12_errors

WHEN = datetime(2026, 3, 11, 8, 5, tzinfo=UTC)


def _claim(**changes: object) -> Claim837:
    c = Claim837(
        submitter_id="1234567893", submitter=Name("1", "Osler", "William"), contact_name="Osler",
        contact_phone="2175550100", contact_email=None, receiver_id="12502",
        receiver_name="MEDICARE PART B", billing=Name("1", "Osler", "William"),
        billing_npi="1234567893",
        billing_address=Address("1 Main St", "Springfield", "IL", "627011234"),
        billing_tax_qualifier="EI", billing_tax_id="123456789", filing_indicator="MB",
        subscriber=Name("1", "Ramirez", "Ana"), member_id="1EG4TE5MK73",
        subscriber_address=Address("12 Elm St", "Springfield", "IL", "62701"),
        birth_date="19500402", gender="F", payer_name="MEDICARE PART B", payer_id="12502",
        patient_control_number="PCN1", total=Decimal("190.38"), place_of_service="10",
        frequency="1", prior_payer_claim_number=None, diagnoses=["E119", "I10"],
        lines=[ServiceLine("99213", ["95"], Decimal("95.19"), Decimal(1), [1, 2], "20260310"),
               ServiceLine("99213", ["95", "G0"], Decimal("95.19"), Decimal(1), [2],
                           "20260310")])
    for k, v in changes.items():
        setattr(c, k, v)
    return c


def test_a_written_claim_validates_and_counts_agree() -> None:
    segs = check_837p(write_837p(_claim(), 42, WHEN, "T"))
    assert segs[0][13] == "000000042" and segs[0][15] == "T"
    assert segs[1][6] == "42"
    assert [s[1] for s in find(segs, "LX")] == ["1", "2"]
    assert find(segs, "SV1")[1][1] == "HC:99213:95:G0"
    assert find(segs, "SV1")[0][7] == "1:2"
    assert find(segs, "HI") == [["HI", "ABK:E119", "ABF:I10"]]


def test_isa_is_fixed_width() -> None:
    text = write_837p(_claim(), 7, WHEN, "P")
    isa = text.split("~")[0]
    assert len(isa + "~") == 106 and isa[-1] == ":"


def test_replacement_carries_frequency_7_and_ref_f8() -> None:
    segs = check_837p(write_837p(_claim(frequency="7", prior_payer_claim_number="0123456789012"),
                                 1, WHEN, "P"))
    assert find(segs, "CLM")[0][5] == "10:B:7"
    assert find(segs, "REF", "F8") == [["REF", "F8", "0123456789012"]]


def test_organisation_billing_with_rendering_provider() -> None:
    segs = check_837p(write_837p(_claim(billing=Name("2", "Prairie Clinic"),
                                        rendering=Name("1", "Osler", "William"),
                                        rendering_npi="1234567893"), 3, WHEN, "P"))
    assert find(segs, "NM1", "85")[0][:4] == ["NM1", "85", "2", "Prairie Clinic"]
    assert find(segs, "NM1", "82")[0][9] == "1234567893"


def test_values_are_cleaned_of_delimiters_and_accents() -> None:
    assert clean("Ramírez*~:^\nLuz", 60) == "Ramirez     Luz"
    assert clean("x" * 80, 60) == "x" * 60
    assert segment("NM1", "a", "", ["b", "", ""], "", "") == "NM1*a**b~"
    assert amount(Decimal("95.10")) == "95.1" and amount(Decimal("100.00")) == "100"
    assert amount(Decimal("0")) == "0"


@pytest.mark.parametrize(("old", "new"), [
    ("SE*26*0001~", "SE*25*0001~"),  # wrong segment count
    ("GE*1*5~", "GE*1*6~"),  # group control number mismatch
    ("CLM*PCN1*190.38", "CLM*PCN1*ABC"),  # a non-numeric charge
    ("DMG*D8*19500402*F", "DMG*D8*19501302*F"),  # an impossible date
    ("SBR*P*18*******MB", "SBR*P*18*******QQ"),  # an unknown claim filing indicator
])
def test_pyx12_fails_what_is_wrong(old: str, new: str) -> None:
    good = write_837p(_claim(), 5, WHEN, "P")
    assert pyx12_errors(good) == []
    assert old in good
    assert pyx12_errors(good.replace(old, new)) != []
