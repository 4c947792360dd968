"""The billing tables, rules and code checks as pure functions."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from operations.billing import codes
from operations.billing.rules import price, select_em
from operations.billing.tables import DATA, TableError, load_tables, parse_tables

TABLES = load_tables()


def _rules(day: str) -> object:
    from datetime import date

    coverage = {"type": {"coding": [{"system": "urn:oid:2.16.840.1.113883.3.221.5",
                                     "code": "1"}]}}
    _, rules = TABLES.rules_for(coverage, None, date.fromisoformat(day))
    assert rules is not None
    return rules


def test_the_date_of_service_picks_the_rules() -> None:
    assert _rules("2026-01-01").path == "medicare-part-b-rules-2026-2027.json"  # type: ignore[attr-defined]
    assert _rules("2027-12-31").path == "medicare-part-b-rules-2026-2027.json"  # type: ignore[attr-defined]
    assert _rules("2028-01-01").path == "medicare-part-b-rules-2028.json"  # type: ignore[attr-defined]


def test_a_coverage_of_another_payer_matches_no_table() -> None:
    from datetime import date

    mine, rules = TABLES.rules_for({"type": {"coding": [{"code": "5"}]}}, None,
                                   date(2026, 5, 1))
    assert mine == [] and rules is None
    payer = {"identifier": [{"system": "urn:x", "value": "12502"}]}
    assert TABLES.rules_for({}, payer, date(2026, 5, 1))[1] is None


@pytest.mark.parametrize(("minutes", "established", "code"), [
    (15, False, "99202"), (29, False, "99202"), (30, False, "99203"), (44, False, "99203"),
    (45, False, "99204"), (59, False, "99204"), (60, False, "99205"), (240, False, "99205"),
    (10, True, "99212"), (19, True, "99212"), (20, True, "99213"), (29, True, "99213"),
    (30, True, "99214"), (39, True, "99214"), (40, True, "99215"), (120, True, "99215"),
])
def test_em_level_by_total_time(minutes: int, established: bool, code: str) -> None:
    assert select_em(_rules("2026-06-01"), minutes, established) == code  # type: ignore[arg-type]


@pytest.mark.parametrize(("minutes", "established"), [(14, False), (9, True), (None, True)])
def test_em_below_the_lowest_level_is_refused(minutes: int | None, established: bool) -> None:
    from fhir_server.errors import FhirError

    with pytest.raises(FhirError) as err:
        select_em(_rules("2026-06-01"), minutes, established)  # type: ignore[arg-type]
    assert err.value.status == 422


def test_prices_from_rvus_and_conversion_factor() -> None:
    from datetime import date

    fees = TABLES.fees_for("medicare-part-b", date(2026, 7, 1))
    assert fees is not None
    assert price(fees, "99213", "non-facility") == Decimal("95.19")
    assert price(fees, "99213", "facility") == Decimal("57.45")
    assert price(fees, "99214", "non-facility") == Decimal("135.61")
    assert price(fees, "99214", "facility") == Decimal("84.50")
    assert price(fees, "Q3014", "facility") == Decimal("31.85")
    assert price(fees, "99215", "non-facility") is None  # no verified 2026 RVUs shipped
    assert price(fees, "99203", "facility") is None
    assert TABLES.fees_for("medicare-part-b", date(2027, 1, 1)) is None


def test_every_shipped_figure_names_a_known_source() -> None:
    sources = json.loads((DATA / "sources.json").read_text())["sources"]
    for path in DATA.glob("*.json"):
        data = json.loads(path.read_text())
        if data["kind"] in ("rules", "fees"):
            assert set(data["sources"]) <= set(sources), path.name
    fees = json.loads((DATA / "medicare-part-b-fees-2026.json").read_text())
    for code, rvu in fees["rvu"].items():
        assert rvu["verified"], code
        known = [rvu[k] for k in ("work", "peNonFacility", "peFacility", "mp")]
        assert all(v is None for v in known) or "verified from" in rvu["verified"] or \
            "as read off" in rvu["verified"], code


def _write(folder: Path, name: str, data: object) -> None:
    (folder / name).write_text(json.dumps(data))


def test_a_new_payer_is_a_pair_of_files(tmp_path: Path) -> None:
    rules = json.loads((DATA / "medicare-part-b-rules-2026-2027.json").read_text())
    rules["payer"] = "acme"
    rules["payerMatch"] = [{"payerIdentifier": {"system": "urn:acme", "value": "A1"}}]
    rules["denials"]["notCovered"]["carc"] = "96"
    fees = json.loads((DATA / "medicare-part-b-fees-2026.json").read_text())
    fees["payer"] = "acme"
    fees["conversionFactor"]["value"] = 40
    _write(tmp_path, "acme-rules.json", rules)
    _write(tmp_path, "acme-fees.json", fees)
    tables = load_tables((str(tmp_path),))
    from datetime import date

    payer = {"identifier": [{"system": "urn:acme", "value": "A1"}]}
    _, found = tables.rules_for({}, payer, date(2026, 2, 1))
    assert found is not None and found.payer == "acme"
    acme = tables.fees_for("acme", date(2026, 2, 1))
    assert acme is not None and price(acme, "99213", "non-facility") == Decimal("114.00")


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "nonsense"}, "'kind'"),
    ({"kind": "fees", "payer": "x", "effective": {"start": "2026-01-01"}}, "'year'"),
    ({"kind": "rules", "payer": "x", "effective": {"start": "2026-13-01"}}, "not a date"),
    ({"kind": "rules", "payer": "x", "effective": {"start": "2026-01-01"}}, "placeOfService"),
    ({"kind": "fees", "payer": "x", "year": 2026, "sources": ["nowhere"],
      "effective": {"start": "2026-01-01", "end": "2026-12-31"}}, "unknown sources"),
])
def test_bad_tables_are_named(tmp_path: Path, data: object, message: str) -> None:
    _write(tmp_path, "bad.json", data)
    with pytest.raises(TableError) as err:
        parse_tables([DATA / "sources.json", tmp_path / "bad.json"])
    assert "bad.json" in str(err.value) and message in str(err.value)
    with pytest.raises(TableError):
        load_tables((str(tmp_path / "missing"),))


def test_npi_check_digit() -> None:
    assert codes.valid_npi("1234567893")  # the CMS worked example
    assert not codes.valid_npi("1234567890")
    assert not codes.valid_npi("123456789")
    assert not codes.valid_npi("A234567893")
    assert codes.npi_check_digit("123456789") == "3"


@pytest.mark.parametrize(("mbi", "ok"), [("1EG4-TE5-MK73", True), ("1EG4TE5MK73", True),
                                         ("0EG4TE5MK73", False), ("1SG4TE5MK73", False),
                                         ("1EG4TE5MK7", False), ("123456789A", False)])
def test_mbi_shape(mbi: str, ok: bool) -> None:
    assert codes.valid_mbi(mbi) is ok


@pytest.mark.parametrize(("code", "ok"), [("E11.9", True), ("E119", True), ("S72.001A", True),
                                          ("U07.1", False), ("E1", False), ("11.9", False)])
def test_icd10cm_shape(code: str, ok: bool) -> None:
    assert codes.valid_icd10cm(code) is ok
    if ok:
        assert "." not in codes.icd_for_x12(code)


@pytest.mark.parametrize(("code", "ok"), [("99213", True), ("0001F", True), ("0591T", True),
                                          ("Q3014", True), ("G2211", True), ("9921", False),
                                          ("Z9999", False), ("992134", False)])
def test_procedure_shape(code: str, ok: bool) -> None:
    assert codes.valid_procedure(code) is ok


def test_import_rvus_from_the_cms_file(tmp_path: Path) -> None:
    from operations.billing.import_rvus import main

    header = [
        "HDR,CPT codes and descriptions only are copyright 2025 American Medical Association.",
        ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
        "HCPCS,MOD,DESCRIPTION,STATUS,NOT USED,WORK,NON-FAC,NON-FAC,FACILITY,FACILITY,MP,"
        "NON-FACILITY,FACILITY,PCTC,GLOB,PRE,INTRA,POST,MULT,BILAT,ASST,CO,TEAM,PRIC,ENDO,"
        "CONV,PHYSICIAN,DIAG,CALCULATION,NON-FAC PE,FAC PE,MP",
    ]
    rows = [
        "99213,,Office o/p est low 20 min,A,,1.30,1.46,,0.33,,0.09,2.85,1.72,0,XXX,0.00,0.00,"
        "0.00,0,0,0,0,0,9,,33.4009,09,0,99,0.00,0.00,0.00",
        "99215,,Office o/p est hi 40 min,A,,2.80,2.50,,0.90,,0.20,5.50,3.90,0,XXX,0.00,0.00,"
        "0.00,0,0,0,0,0,9,,33.4009,09,0,99,0.00,0.00,0.00",
        "99215,26,Office o/p est hi 40 min,A,,9.99,9.99,,9.99,,9.99,9.99,9.99,0,XXX,0.00,0.00,"
        "0.00,0,0,0,0,0,9,,33.4009,09,0,99,0.00,0.00,0.00",
        "98016,,Brf comm tech svc est pt,A,,0.30,0.20,NA,0.10,,0.02,0.52,0.42,0,XXX,0.00,0.00,"
        "0.00,0,0,0,0,0,9,,33.4009,09,0,99,0.00,0.00,0.00",
    ]
    csv_file = tmp_path / "PPRRVU2026_test.csv"
    csv_file.write_text("\n".join(header + rows) + "\n", encoding="latin-1")
    table = tmp_path / "fees.json"
    table.write_text((DATA / "medicare-part-b-fees-2026.json").read_text())
    assert main([str(csv_file), "--into", str(table), "--codes", "99215,98016,99999"]) == 0
    data = json.loads(table.read_text())
    assert data["rvu"]["99215"]["work"] == 2.80 and data["rvu"]["99215"]["peFacility"] == 0.90
    assert data["rvu"]["98016"]["peNonFacility"] is None  # NA in the file
    assert "PPRRVU2026_test.csv" in data["rvu"]["99215"]["verified"]
    assert data["conversionFactor"]["value"] == 33.4009
    assert data["rvu"]["99213"]["work"] == 1.30  # untouched
    parse_tables([DATA / "sources.json", table])
    assert main([str(csv_file), "--into", str(tmp_path / "none.json")]) == 2
