"""Billing over HTTP on both backends: `$submit-claim` turns finished telehealth visits into
R4 Claims and adjudicated ClaimResponses from the payer tables, `$export-837p` gives X12 837P
interchanges that pyx12 validates, and CoverageEligibilityRequest answers from the same tables.

The shipped 2026 Medicare table prices 99213 and 99214 (and 99203 at the non-facility rate)
from verified RVUs; the other codes have no verified 2026 RVUs, so tests that need them load a
table of test values from a folder (TELEFHIR_BILLING_TABLES), as an installation would load the
CMS values: no code changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_server.app import create_app
from fhir_server.config import Config
from fhir_server.store.base import ResourceStore
from operations.billing.tables import DATA
from tests.integration.billing_data import (
    CHANNEL,
    CPT,
    HCPCS,
    ICD,
    NPI,
    ROLE,
    SITE,
    VS,
    H,
    adjudication,
    diagnostics,
    npi,
    outputs,
    practice,
    put,
    submit,
    visit,
)
from tests.integration.x12_check import check_837p, find

POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
TEST_RVU = {"work": 1.0, "peNonFacility": 1.0, "peFacility": 0.5, "mp": 0.1,
            "source": "rvu26", "verified": "TEST VALUE for the test suite, not a CMS figure"}


def _test_tables(folder: Path) -> None:
    """The shipped 2026 fees with test RVUs where no verified value is shipped, and a 2028 fee
    table of test values (no CY 2028 fee schedule exists yet)."""
    fees = json.loads((DATA / "medicare-part-b-fees-2026.json").read_text())
    for rvu in fees["rvu"].values():
        for key in ("work", "peNonFacility", "peFacility", "mp"):
            if rvu.get(key) is None:
                rvu[key] = TEST_RVU[key]
        rvu.setdefault("verified", TEST_RVU["verified"])
    (folder / "fees-2026-test.json").write_text(json.dumps(fees))
    later = copy.deepcopy(fees)
    later["year"] = 2028
    later["effective"] = {"start": "2028-01-01", "end": "2028-12-31"}
    (folder / "fees-2028-test.json").write_text(json.dumps(later))


@pytest.fixture
def bclient(store: ResourceStore, db_url: str, tmp_path: Path) -> FlaskClient:
    """A client of a server that also loads the test tables."""
    folder = tmp_path / "tables"
    folder.mkdir()
    _test_tables(folder)
    app = create_app(Config(db_url=db_url, billing_tables=(str(folder),)), store=store)
    return app.test_client()


def _code(item: dict[str, Any]) -> str:
    return str(item["productOrService"]["coding"][0]["code"])


def _mods(item: dict[str, Any]) -> list[str]:
    return [m["coding"][0]["code"] for m in item.get("modifier", [])]


def _pos(item: dict[str, Any]) -> str | None:
    loc = item.get("locationCodeableConcept")
    if not loc:
        return None
    assert loc["coding"][0]["system"] == POS
    return str(loc["coding"][0]["code"])


def _export(client: FlaskClient, claim_id: str) -> list[list[str]]:
    r = client.get(f"/fhir/Claim/{claim_id}/$export-837p")
    assert r.status_code == 200, r.json
    assert r.headers["Content-Type"] == "application/edi-x12"
    return check_837p(r.data.decode("ascii"))


def _established(client: FlaskClient) -> None:
    """A visit with the same practitioner within three years: the patient is established."""
    visit(client, "prior", start="2025-06-01T10:00:00-05:00")


# -- the patient at home --------------------------------------------------------------------------

def test_patient_at_home_is_pos_10_with_95_and_no_facility_claim(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "v1", minutes=25)
    claims, responses = outputs(submit(client, "v1"))
    assert len(claims) == len(responses) == 1
    claim = claims[0]
    assert claim["status"] == "active" and claim["use"] == "claim"
    assert claim["type"]["coding"][0]["code"] == "professional"
    assert claim["patient"] == {"reference": "Patient/pat"}
    assert claim["provider"]["reference"] == "Practitioner/doc"
    assert claim["insurer"]["reference"] == "Organization/medicare"
    assert claim["insurance"][0]["coverage"] == {"reference": "Coverage/cov"}
    assert claim["billablePeriod"]["start"] == "2026-03-10T09:00:00-06:00"
    [item] = claim["item"]
    assert _code(item) == "99213" and item["productOrService"]["coding"][0]["system"] == CPT
    assert _mods(item) == ["95"] and _pos(item) == "10"
    assert item["servicedDate"] == "2026-03-10"
    assert item["encounter"] == [{"reference": "Encounter/v1"}]
    # non-facility rate: (1.30 + 1.46 + 0.09) x 33.4009 = 95.19
    assert item["unitPrice"] == {"value": 95.19, "currency": "USD"} == item["net"]
    assert item["diagnosisSequence"] == [1]
    assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0] == {
        "system": ICD, "code": "E11.9"}
    assert not any(_code(i) == "Q3014" for c in claims for i in c["item"])
    response = responses[0]
    assert response["request"] == {"reference": f"Claim/{claim['id']}"}
    assert response["outcome"] == "complete"
    assert adjudication(response, "submitted") == 95.19
    assert adjudication(response, "eligible") == 95.19
    assert adjudication(response, "deductible") == 95.19  # first claim of the year
    assert adjudication(response, "benefit") == 0
    # stored, readable and searchable
    assert client.get(f"/fhir/Claim/{claim['id']}").json["id"] == claim["id"]
    found = client.get("/fhir/ClaimResponse?request=Claim/" + claim["id"]).json
    assert [e["resource"]["id"] for e in found["entry"]] == [response["id"]]
    segs = _export(client, claim["id"])
    [clm] = find(segs, "CLM")
    assert clm[5] == "10:B:1"
    [sv1] = find(segs, "SV1")
    assert sv1[1] == "HC:99213:95" and sv1[2] == "95.19" and sv1[7] == "1"
    assert find(segs, "HI") == [["HI", "ABK:E119"]]
    assert find(segs, "DTP", "472") == [["DTP", "472", "D8", "20260310"]]
    assert find(segs, "NM1", "IL")[0][9] == "1EG4TE5MK73"
    assert find(segs, "NM1", "85")[0][9] == npi("123456789")
    assert find(segs, "REF", "EI") == [["REF", "EI", "123456789"]]
    assert find(segs, "SBR")[0][9] == "MB"


def test_the_date_of_service_is_local_to_the_visit(client: FlaskClient) -> None:
    """7.30 pm in Chicago is the next day in UTC: the timezone extension decides."""
    practice(client)
    _established(client)
    visit(client, "tz", start="2026-03-11T01:30:00Z", minutes=25, extension=[{
        "url": "http://hl7.org/fhir/StructureDefinition/timezone",
        "valueCode": "America/Chicago"}])
    claims, _ = outputs(submit(client, "tz"))
    assert claims[0]["item"][0]["servicedDate"] == "2026-03-10"
    assert find(_export(client, claims[0]["id"]), "DTP", "472")[0][3] == "20260310"


def test_part_b_pays_80_percent_after_the_deductible(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    paid = []
    for n, day in enumerate(("2026-02-02", "2026-03-02", "2026-04-06")):
        visit(client, f"d{n}", start=f"{day}T10:00:00-06:00", minutes=35)  # 99214
        _, [response] = outputs(submit(client, f"d{n}"))
        paid.append((adjudication(response, "deductible"), adjudication(response, "coinsurance"),
                     adjudication(response, "benefit")))
    # 99214 non-facility: 4.06 x 33.4009 = 135.61; the 2026 Part B deductible is $283
    assert paid == [(135.61, 0, 0), (135.61, 0, 0), (11.78, 24.77, 99.06)]


def test_coverage_cost_to_beneficiary_overrides_the_table(client: FlaskClient) -> None:
    copay_type = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
    practice(client, costToBeneficiary=[
        {"type": {"coding": [{"system": copay_type, "code": "deductible"}]},
         "valueMoney": {"value": 0, "currency": "USD"}},
        {"type": {"coding": [{"system": copay_type, "code": "televisit"}]},
         "valueMoney": {"value": 15, "currency": "USD"}}])
    _established(client)
    visit(client, "cp", minutes=25)
    _, [response] = outputs(submit(client, "cp"))
    assert adjudication(response, "deductible") == 0
    assert adjudication(response, "copay") == 15
    assert adjudication(response, "benefit") == 80.19
    assert adjudication(response, "memberliability") == 15


# -- the patient at an originating site -----------------------------------------------------------

def test_originating_site_is_pos_02_with_a_separate_q3014_facility_claim(
        client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "os", location="clinic", minutes=25)
    claims, responses = outputs(submit(client, "os"))
    assert len(claims) == len(responses) == 2
    professional, facility = claims
    [item] = professional["item"]
    assert _code(item) == "99213" and _mods(item) == ["95"] and _pos(item) == "02"
    # facility rate: (1.30 + 0.33 + 0.09) x 33.4009 = 57.45
    assert item["net"]["value"] == 57.45
    assert professional["provider"]["reference"] == "Practitioner/doc"
    assert facility["provider"]["reference"] == "Organization/clinic-org"
    [fee] = facility["item"]
    assert _code(fee) == "Q3014"
    assert fee["productOrService"]["coding"][0]["system"] == HCPCS
    assert fee["net"] == {"value": 31.85, "currency": "USD"}
    assert _mods(fee) == [] and _pos(fee) == "11"
    assert "careTeam" not in facility
    assert responses[1]["request"]["reference"] == f"Claim/{facility['id']}"
    # the facility fee is paid at 80% after the deductible that remains
    assert adjudication(responses[0], "deductible") == 57.45
    assert adjudication(responses[1], "deductible") == 31.85
    for claim in claims:
        segs = _export(client, claim["id"])
        assert find(segs, "CLM")[0][5] == ("02:B:1" if claim is professional else "11:B:1")
    fsegs = _export(client, facility["id"])
    assert find(fsegs, "SV1")[0][1] == "HC:Q3014"
    assert find(fsegs, "NM1", "85")[0][3] == "Prairie Clinic"


def test_hospital_originating_site_bills_an_institutional_claim(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    put(client, {"resourceType": "Location", "id": "hosp", "status": "active",
                 "type": [{"coding": [{"system": ROLE, "code": "HOSP"}]}],
                 "managingOrganization": {"reference": "Organization/clinic-org"}})
    visit(client, "h", location="hosp", minutes=25)
    claims, _ = outputs(submit(client, "h"))
    facility = claims[1]
    assert facility["type"]["coding"][0]["code"] == "institutional"
    assert facility["item"][0]["revenue"]["coding"][0]["code"] == "0780"
    assert facility["supportingInfo"][0]["code"]["coding"][0]["code"] == "0131"
    r = client.get(f"/fhir/Claim/{facility['id']}/$export-837p")
    assert r.status_code == 422 and "837I" in diagnostics(r)
    _export(client, claims[0]["id"])


def test_patient_at_a_site_that_is_not_an_originating_site_gets_no_facility_claim(
        client: FlaskClient) -> None:
    practice(client)
    _established(client)
    put(client, {"resourceType": "Location", "id": "work", "status": "active"})
    visit(client, "w", location="work", minutes=25)
    claims, _ = outputs(submit(client, "w"))
    assert len(claims) == 1 and _pos(claims[0]["item"][0]) == "02"


# -- audio-only -----------------------------------------------------------------------------------

def test_audio_only_at_home_is_modifier_93(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "a1", channel="audio-only", minutes=25)
    claims, responses = outputs(submit(client, "a1"))
    item = claims[0]["item"][0]
    assert _mods(item) == ["93"] and _pos(item) == "10"
    assert "denialreason" not in json.dumps(responses[0])
    assert find(_export(client, claims[0]["id"]), "SV1")[0][1] == "HC:99213:93"
    # the modality parameter overrides the channel
    visit(client, "a2", channel="audio-video", minutes=25)
    claims, _ = outputs(submit(client, "a2", modality="audio-only"))
    assert _mods(claims[0]["item"][0]) == ["93"]


def test_audio_only_is_refused_where_it_is_not_allowed(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "a3", channel="audio-only", location="clinic", minutes=25)
    r = submit(client, "a3")
    assert r.status_code == 422
    text = diagnostics(r)
    assert "audio-only" in text and "93" in text and "home" in text
    assert r.json["issue"][0]["expression"] == ["modality"]
    assert client.get("/fhir/Claim?encounter=Encounter/a3").json.get("total", 0) == 0


def test_rhc_or_fqhc_billing_reports_fq_instead_of_93(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    put(client, {"resourceType": "Organization", "id": "fqhc", "name": "Valley FQHC",
                 "type": [{"coding": [{"system": "http://nucc.org/provider-taxonomy",
                                       "code": "261QF0400X"}]}],
                 "identifier": [{"system": NPI, "value": npi("155555555")}]})
    visit(client, "fq", channel="audio-only", minutes=25)
    claims, _ = outputs(submit(client, "fq", provider="Organization/fqhc"))
    assert _mods(claims[0]["item"][0]) == ["FQ"]
    assert claims[0]["provider"]["reference"] == "Organization/fqhc"
    assert claims[0]["careTeam"][0]["provider"]["reference"] == "Practitioner/doc"


def test_acute_stroke_adds_g0(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "st", dx="I63.9", minutes=25)
    claims, _ = outputs(submit(client, "st"))
    assert _mods(claims[0]["item"][0]) == ["95", "G0"]
    assert find(_export(client, claims[0]["id"]), "SV1")[0][1] == "HC:99213:95:G0"


# -- E/M level: new vs established and time -------------------------------------------------------

@pytest.mark.parametrize(("minutes", "code"), [(15, "99202"), (29, "99202"), (30, "99203"),
                                               (45, "99204"), (59, "99204"), (60, "99205"),
                                               (90, "99205")])
def test_new_patient_time_thresholds(bclient: FlaskClient, minutes: int, code: str) -> None:
    practice(bclient)
    visit(bclient, "n", minutes=minutes)
    claims, _ = outputs(submit(bclient, "n"))
    assert _code(claims[0]["item"][0]) == code


@pytest.mark.parametrize(("minutes", "code"), [(10, "99212"), (19, "99212"), (20, "99213"),
                                               (30, "99214"), (39, "99214"), (40, "99215"),
                                               (75, "99215")])
def test_established_patient_time_thresholds(bclient: FlaskClient, minutes: int,
                                             code: str) -> None:
    practice(bclient)
    _established(bclient)
    visit(bclient, "e", minutes=minutes)
    claims, _ = outputs(submit(bclient, "e"))
    assert _code(claims[0]["item"][0]) == code
    _export(bclient, claims[0]["id"])


def test_below_the_lowest_threshold_asks_for_a_procedure(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "short", minutes=9)
    r = submit(client, "short")
    assert r.status_code == 422 and "99212" in diagnostics(r) and "procedure" in diagnostics(r)
    claims, _ = outputs(submit(client, "short", procedure="99213"))
    assert _code(claims[0]["item"][0]) == "99213"


def test_time_from_the_period_when_there_is_no_length(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "p", minutes=0, length=None,
          period={"start": "2026-03-10T09:00:00-06:00", "end": "2026-03-10T09:31:00-06:00"})
    claims, _ = outputs(submit(client, "p"))
    assert _code(claims[0]["item"][0]) == "99214"


def test_new_vs_established_three_year_rule(client: FlaskClient) -> None:
    practice(client)
    # a visit more than three years before: still a new patient (99203 at 30 minutes)
    visit(client, "old", start="2022-03-09T10:00:00-06:00")
    visit(client, "n1", minutes=30)
    claims, _ = outputs(submit(client, "n1"))
    assert _code(claims[0]["item"][0]) == "99203"
    assert claims[0]["item"][0]["net"]["value"] == 117.57  # (1.60+1.76+0.16) x 33.4009
    # a visit within three years: established (99214 at 30 minutes)
    visit(client, "recent", start="2023-03-11T10:00:00-06:00")
    visit(client, "n2", minutes=30, start="2026-03-12T09:00:00-06:00")
    claims, _ = outputs(submit(client, "n2"))
    assert _code(claims[0]["item"][0]) == "99214"


def test_same_group_same_specialty_makes_an_established_patient(client: FlaskClient) -> None:
    practice(client)
    spec = [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207Q00000X"}]}]
    put(client, {"resourceType": "Practitioner", "id": "doc2",
                 "identifier": [{"system": NPI, "value": npi("176543210")}],
                 "name": [{"family": "Cushing", "given": ["Harvey"]}]})
    for pid, prac in (("role1", "doc"), ("role2", "doc2")):
        put(client, {"resourceType": "PractitionerRole", "id": pid, "specialty": spec,
                     "practitioner": {"reference": f"Practitioner/{prac}"},
                     "organization": {"reference": "Organization/clinic-org"}})
    visit(client, "g0", start="2025-05-05T10:00:00-05:00",
          participant=[{"individual": {"reference": "PractitionerRole/role2"}}])
    visit(client, "g1", minutes=30,
          participant=[{"individual": {"reference": "PractitionerRole/role1"}}])
    claims, _ = outputs(submit(client, "g1"))
    claim = claims[0]
    assert _code(claim["item"][0]) == "99214"  # established through the group
    assert claim["provider"]["reference"] == "Organization/clinic-org"
    assert claim["careTeam"][0]["provider"]["reference"] == "Practitioner/doc"
    segs = _export(client, claim["id"])
    assert find(segs, "NM1", "82")[0][9] == npi("123456789")  # rendering provider
    assert find(segs, "NM1", "85")[0][9] == npi("198765432")  # billing group


# -- dates of service after the flexibilities -----------------------------------------------------

def test_after_2027_home_is_an_originating_site_only_for_mental_health(
        bclient: FlaskClient) -> None:
    practice(bclient)
    _established(bclient)
    visit(bclient, "f1", start="2028-01-04T09:00:00-06:00", minutes=25)
    claims, [response] = outputs(submit(bclient, "f1"))
    assert _pos(claims[0]["item"][0]) == "10"
    denial = [a for a in response["item"][0]["adjudication"]
              if a["category"]["coding"][0]["code"] == "denialreason"][0]
    assert denial["reason"]["coding"][0]["system"] == CARC
    assert denial["reason"]["coding"][0]["code"] == "58"
    assert adjudication(response, "benefit") == 0
    assert response["disposition"].startswith("Denied")
    # mental health at home stays allowed, audio-only too
    visit(bclient, "f2", start="2028-01-05T09:00:00-06:00", channel="audio-only", dx="F32.1")
    claims, [response] = outputs(submit(bclient, "f2", procedure="90834"))
    assert _mods(claims[0]["item"][0]) == ["93"]
    assert "denialreason" not in json.dumps(response)
    _export(bclient, claims[0]["id"])
    # audio-only for a service that is not mental health is no longer covered
    visit(bclient, "f3", start="2028-01-06T09:00:00-06:00", channel="audio-only", minutes=25)
    _, [response] = outputs(submit(bclient, "f3"))
    assert "CARC 58" in response["disposition"]
    # the same visit on 2027-12-31 is still under the flexibilities... but no 2027 fee table
    # is loaded, which is said plainly
    visit(bclient, "f4", start="2027-12-31T09:00:00-06:00", minutes=25)
    r = submit(bclient, "f4")
    assert r.status_code == 422 and "2027" in diagnostics(r)


def test_after_2027_without_a_fee_table_is_refused(client: FlaskClient) -> None:
    practice(client)
    visit(client, "late", start="2028-02-01T09:00:00-06:00")
    r = submit(client, "late")
    assert r.status_code == 422 and "No fee table" in diagnostics(r)
    assert "2028" in diagnostics(r)


def test_after_2027_an_originating_site_must_be_rural(bclient: FlaskClient) -> None:
    practice(bclient)
    _established(bclient)
    visit(bclient, "r1", start="2028-03-01T09:00:00-06:00", location="clinic", minutes=25)
    claims, responses = outputs(submit(bclient, "r1"))
    assert "CARC 58" in responses[0]["disposition"] and "rural" in responses[0]["disposition"]
    assert "CARC 58" in responses[1]["disposition"]  # no facility fee either
    put(bclient, {"resourceType": "Location", "id": "rural-clinic", "status": "active",
                  "type": [{"coding": [{"system": SITE, "code": "office"}]},
                           {"coding": [{"system": "https://telefhir.org/fhir/CodeSystem/"
                                                  "location-attribute", "code": "rural"}]}],
                  "managingOrganization": {"reference": "Organization/clinic-org"}})
    visit(bclient, "r2", start="2028-03-02T09:00:00-06:00", location="rural-clinic",
          minutes=25)
    claims, responses = outputs(submit(bclient, "r2"))
    assert [r["disposition"].split(":")[0] for r in responses] == ["Processed", "Processed"]
    assert _pos(claims[0]["item"][0]) == "02" and _code(claims[1]["item"][0]) == "Q3014"


# -- refusals -------------------------------------------------------------------------------------

def test_missing_coverage_is_refused(client: FlaskClient) -> None:
    practice(client, status="cancelled")
    visit(client, "nc")
    r = submit(client, "nc")
    assert r.status_code == 422 and "no active Coverage" in diagnostics(r)
    assert r.json["issue"][0]["expression"] == ["coverage"]
    r = submit(client, "nc", coverage="Coverage/cov")
    assert r.status_code == 422 and "not active" in diagnostics(r)


def test_coverage_not_in_force_on_the_date_of_service_is_refused(client: FlaskClient) -> None:
    practice(client, period={"start": "2026-06-01"})
    visit(client, "early")
    r = submit(client, "early")
    assert r.status_code == 422 and "2026-03-10" in diagnostics(r)


def test_unfinished_encounter_is_refused(client: FlaskClient) -> None:
    practice(client)
    visit(client, "ip", status="in-progress")
    r = submit(client, "ip")
    assert r.status_code == 422 and "'in-progress'" in diagnostics(r)
    assert r.json["issue"][0]["expression"] == ["Encounter.status"]


@pytest.mark.parametrize(("change", "expect"), [
    ({"dx": None}, "no ICD-10-CM diagnosis"),
    ({"subject": None}, "no patient"),
])
def test_encounter_without_what_a_claim_needs_is_refused(client: FlaskClient,
                                                         change: dict[str, Any],
                                                         expect: str) -> None:
    practice(client)
    visit(client, "x", **change)
    r = submit(client, "x")
    assert r.status_code == 422 and expect in diagnostics(r)


def test_provider_without_a_valid_npi_is_refused(client: FlaskClient) -> None:
    practice(client)
    put(client, {"resourceType": "Practitioner", "id": "nonpi",
                 "name": [{"family": "Nobody"}]})
    put(client, {"resourceType": "Practitioner", "id": "badnpi",
                 "identifier": [{"system": NPI, "value": "1234567890"}]})
    visit(client, "np")
    r = submit(client, "np", provider="Practitioner/nonpi")
    assert r.status_code == 422 and "has no NPI" in diagnostics(r)
    assert r.json["issue"][0]["expression"] == ["provider"]
    r = submit(client, "np", provider="Practitioner/badnpi")
    assert r.status_code == 422 and "check digit" in diagnostics(r)


def test_diagnoses_from_conditions_and_the_input(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "dx", dx=None, minutes=25)
    for code in ("I10", "E78.5"):
        client.post("/fhir/Condition", headers=H, data=json.dumps({
            "resourceType": "Condition", "subject": {"reference": "Patient/pat"},
            "encounter": {"reference": "Encounter/dx"},
            "code": {"coding": [{"system": ICD, "code": code}]}}))
    claims, _ = outputs(submit(client, "dx"))
    codes = {d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in claims[0]["diagnosis"]}
    assert codes == {"I10", "E78.5"}
    assert claims[0]["item"][0]["diagnosisSequence"] == [1, 2]
    segs = _export(client, claims[0]["id"])
    assert find(segs, "SV1")[0][7] == "1:2"
    r = submit(client, "dx", diagnosis=["J06.9"])
    claims, _ = outputs(r)
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"]
            for d in claims[0]["diagnosis"]] == ["J06.9"]
    r = submit(client, "dx", diagnosis=["NOT-A-CODE"])
    assert r.status_code == 422 and "ICD-10-CM" in diagnostics(r)
    r = submit(client, "dx", diagnosis=[f"E11.{n}" for n in range(13)])
    assert r.status_code == 422 and "12" in diagnostics(r)


def test_bad_parameters_and_wrong_method(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "bp")
    r = submit(client, "bp", modality="carrier-pigeon")
    assert r.status_code == 422 and "modality" in diagnostics(r)
    r = client.get("/fhir/Encounter/bp/$submit-claim")
    assert r.status_code == 405
    r = submit(client, "missing")
    assert r.status_code == 404
    r = client.post("/fhir/Encounter/bp/$submit-claim", headers=H, data=json.dumps({
        "resourceType": "Parameters", "parameter": [{"name": "procedure", "valueCode": "x"}]}))
    assert r.status_code == 400


# -- denials --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "carc"), [("98005", "96"), ("97110", "204")])
def test_non_covered_service_is_denied_with_a_reason(client: FlaskClient, code: str,
                                                     carc: str) -> None:
    practice(client)
    _established(client)
    visit(client, "nc")
    claims, [response] = outputs(submit(client, "nc", procedure=code))
    assert _code(claims[0]["item"][0]) == code
    assert response["outcome"] == "complete" and response["disposition"].startswith("Denied")
    reasons = [a["reason"]["coding"][0] for a in response["item"][0]["adjudication"]
               if "reason" in a]
    assert reasons and all(r["code"] == carc and r["system"] == CARC for r in reasons)
    assert adjudication(response, "benefit") == 0
    assert response["payment"]["amount"]["value"] == 0
    _export(client, claims[0]["id"])


# -- resubmission and correction ------------------------------------------------------------------

def test_resubmission_returns_the_same_claim(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "rs", location="clinic", minutes=25)
    first = outputs(submit(client, "rs"))
    again = outputs(submit(client, "rs"))
    assert [c["id"] for c in again[0]] == [c["id"] for c in first[0]]
    assert [r["id"] for r in again[1]] == [r["id"] for r in first[1]]
    assert all(c["meta"]["versionId"] == "1" for c in again[0])
    # a change to the Encounter that changes nothing billed is not a correction
    visit(client, "rs", location="clinic", minutes=25,
          text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                              "Follow-up</div>"})
    third = outputs(submit(client, "rs"))
    assert [c["id"] for c in third[0]] == [c["id"] for c in first[0]]
    assert client.get("/fhir/Claim?encounter=Encounter/rs").json["total"] == 2


def test_correction_makes_a_replacement_claim_and_cancels_the_old(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "cr", minutes=25)
    [old], [old_response] = outputs(submit(client, "cr"))
    visit(client, "cr", minutes=35)  # the note said 35 minutes: 99214
    [new], [new_response] = outputs(submit(client, "cr"))
    assert new["id"] != old["id"] and _code(new["item"][0]) == "99214"
    [related] = new["related"]
    assert related["claim"] == {"reference": f"Claim/{old['id']}"}
    assert related["relationship"]["coding"][0]["code"] == "prior"
    assert client.get(f"/fhir/Claim/{old['id']}").json["status"] == "cancelled"
    assert client.get(f"/fhir/ClaimResponse/{old_response['id']}").json["status"] == \
        "cancelled"
    # the deductible of the cancelled claim is released
    assert adjudication(new_response, "deductible") == 135.61
    active = client.get("/fhir/Claim?encounter=Encounter/cr&status=active").json
    assert [e["resource"]["id"] for e in active["entry"]] == [new["id"]]
    segs = _export(client, new["id"])
    assert find(segs, "CLM")[0][5] == "10:B:7"
    assert find(segs, "REF", "F8") == [["REF", "F8", old_response["identifier"][0]["value"]]]
    void = _export(client, old["id"])
    assert find(void, "CLM")[0][5] == "10:B:8"
    # resubmitting the corrected visit returns the replacement
    again, _ = outputs(submit(client, "cr"))
    assert [c["id"] for c in again] == [new["id"]]


def test_moving_home_cancels_the_facility_claim(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "mv", location="clinic", minutes=25)
    claims, _ = outputs(submit(client, "mv"))
    visit(client, "mv", location="home", minutes=25)
    new, _ = outputs(submit(client, "mv"))
    assert len(new) == 1 and _pos(new[0]["item"][0]) == "10"
    assert client.get(f"/fhir/Claim/{claims[1]['id']}").json["status"] == "cancelled"


# -- the 837P export ------------------------------------------------------------------------------

def test_export_answers_x12_and_errors_as_operation_outcomes(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "x1", minutes=25)
    claims, _ = outputs(submit(client, "x1"))
    url = f"/fhir/Claim/{claims[0]['id']}/$export-837p"
    first = client.get(url, headers={"Accept": "application/edi-x12"})
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/edi-x12"
    second = client.get(url + "?_pretty=true")
    isa = [check_837p(r.data.decode())[0][13] for r in (first, second)]
    assert int(isa[1]) == int(isa[0]) + 1  # a new interchange control number each time
    r = client.get("/fhir/Claim/nope/$export-837p", headers={"Accept": "application/edi-x12"})
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/fhir+json")
    assert r.json["resourceType"] == "OperationOutcome"
    r = client.post(url)
    assert r.status_code == 200  # side-effect free: GET or POST
    # an ordinary read still wants a FHIR format
    r = client.get(f"/fhir/Claim/{claims[0]['id']}", headers={"Accept": "application/edi-x12"})
    assert r.status_code == 406


def test_export_names_what_the_837p_needs(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "x2", minutes=25)
    claims, _ = outputs(submit(client, "x2"))
    url = f"/fhir/Claim/{claims[0]['id']}/$export-837p"
    doc = client.get("/fhir/Practitioner/doc").json
    doc["address"][0]["postalCode"] = "62701"
    put(client, doc)
    r = client.get(url)
    assert r.status_code == 422 and "ZIP+4" in diagnostics(r)
    doc["address"][0]["postalCode"] = "62701-1234"
    doc["identifier"] = doc["identifier"][:1]
    put(client, doc)
    r = client.get(url)
    assert r.status_code == 422 and "tax id" in diagnostics(r)
    doc["identifier"].append({"system": "urn:oid:2.16.840.1.113883.4.4", "value": "123456789"})
    put(client, doc)
    cov = client.get("/fhir/Coverage/cov").json
    cov["subscriberId"] = "123-45-6789A"
    put(client, cov)
    r = client.get(url)
    assert r.status_code == 422 and "MBI" in diagnostics(r)


# -- definitions and capability -------------------------------------------------------------------

def test_operation_definitions_are_served_and_listed(client: FlaskClient) -> None:
    d = client.get("/fhir/OperationDefinition/Encounter-submit-claim").json
    assert d["url"] == "https://telefhir.org/fhir/OperationDefinition/Encounter-submit-claim"
    assert {p["name"] for p in d["parameter"] if p["use"] == "in"} == {
        "coverage", "procedure", "diagnosis", "modality", "provider"}
    assert {p["name"]: p["max"] for p in d["parameter"] if p["use"] == "out"} == {
        "claim": "*", "claimResponse": "*"}
    cap = client.get("/fhir/metadata").json
    ops = {(r["type"], o["name"]) for r in cap["rest"][0]["resource"]
           for o in r.get("operation", [])}
    assert {("Encounter", "submit-claim"), ("Claim", "export-837p"),
            ("CoverageEligibilityRequest", "submit")} <= ops


# -- coverage eligibility -------------------------------------------------------------------------

def _eligibility(items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "CoverageEligibilityRequest", "status": "active",
            "purpose": ["benefits"], "patient": {"reference": "Patient/pat"},
            "servicedDate": "2026-05-01", "created": "2026-04-30",
            "insurer": {"reference": "Organization/medicare"},
            "provider": {"reference": "Practitioner/doc"},
            "facility": {"reference": "Location/home"}, **({"item": items} if items else {}),
            **extra}


def _item(code: str, *modifiers: str) -> dict[str, Any]:
    return {"productOrService": {"coding": [{"system": CPT, "code": code}]},
            "modifier": [{"coding": [{"system": CPT, "code": m}]} for m in modifiers]}


def test_eligibility_submit_answers_from_the_tables(client: FlaskClient) -> None:
    practice(client)
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource":
            _eligibility([_item("99213", "95"), _item("98005", "95")])}]}
    r = client.post("/fhir/CoverageEligibilityRequest/$submit", headers=H,
                    data=json.dumps(body))
    assert r.status_code == 200, r.json
    resp = r.json
    assert resp["resourceType"] == "CoverageEligibilityResponse"
    assert resp["outcome"] == "complete"
    [insurance] = resp["insurance"]
    assert insurance["coverage"] == {"reference": "Coverage/cov"} and insurance["inforce"]
    covered, denied = insurance["item"]
    assert covered["excluded"] is False
    benefits = {b["type"]["coding"][0]["code"]: b for b in covered["benefit"]}
    assert benefits["benefit"]["allowedMoney"]["value"] == 95.19
    assert benefits["deductible"]["allowedMoney"]["value"] == 283
    assert benefits["copay-percent"]["allowedUnsignedInt"] == 20
    assert benefits["patient"]["allowedMoney"]["value"] == 95.19  # all to the deductible
    assert denied["excluded"] is True and "CARC 96" in denied["description"]
    # the request was stored, and so was the response
    req_id = resp["request"]["reference"].split("/")[1]
    assert client.get(f"/fhir/CoverageEligibilityRequest/{req_id}").status_code == 200
    assert client.get(f"/fhir/CoverageEligibilityResponse/{resp['id']}").status_code == 200
    # the resource may also be posted directly
    r = client.post("/fhir/CoverageEligibilityRequest/$submit", headers=H,
                    data=json.dumps(_eligibility([_item("99214", "93")])))
    assert r.status_code == 200 and r.json["insurance"][0]["item"][0]["excluded"] is False


def test_eligibility_by_create_and_its_errors(client: FlaskClient) -> None:
    practice(client)
    r = client.post("/fhir/CoverageEligibilityRequest", headers=H,
                    data=json.dumps(_eligibility([_item("99213", "93")],
                                                 facility={"reference": "Location/clinic"})))
    assert r.status_code == 201
    found = client.get("/fhir/CoverageEligibilityResponse?request=CoverageEligibilityRequest/"
                       + r.json["id"]).json
    [entry] = found["entry"]
    # audio-only away from home is not covered
    assert entry["resource"]["insurance"][0]["item"][0]["excluded"] is True
    r = client.post("/fhir/CoverageEligibilityRequest", headers=H,
                    data=json.dumps(_eligibility([], servicedDate="2024-01-01")))
    found = client.get("/fhir/CoverageEligibilityResponse?request=CoverageEligibilityRequest/"
                       + r.json["id"]).json
    resp = found["entry"][0]["resource"]
    assert resp["outcome"] == "error" and "no active Coverage" in resp["disposition"]
    r = client.post("/fhir/CoverageEligibilityRequest/$submit", headers=H,
                    data=json.dumps(_eligibility([], status="draft")))
    assert r.status_code == 422


def test_virtual_service_channel_decides_the_modality(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "ch", channel=None, minutes=25, extension=[{"url": VS, "extension": [
        {"url": "channelType", "valueCoding": {"system": CHANNEL, "code": "audio-only"}}]}])
    claims, _ = outputs(submit(client, "ch"))
    assert _mods(claims[0]["item"][0]) == ["93"]
    visit(client, "inperson", channel=None, minutes=25,
          **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                       "code": "AMB"}})
    r = submit(client, "inperson")
    assert r.status_code == 422 and "not a telehealth visit" in diagnostics(r)
    # the plain-value form of the extension, with an HL7 example channel type
    visit(client, "plain", channel=None, minutes=25, extension=[{"url": VS, "valueCoding": {
        "system": "http://hl7.org/fhir/virtual-service-type", "code": "zoom"}}])
    claims, _ = outputs(submit(client, "plain"))
    assert _mods(claims[0]["item"][0]) == ["95"]


def test_a_visit_without_the_patients_location_is_refused(client: FlaskClient) -> None:
    practice(client)
    _established(client)
    visit(client, "nowhere", location=None, minutes=25)
    r = submit(client, "nowhere")
    assert r.status_code == 422 and "POS 10" in diagnostics(r)
    assert r.json["issue"][0]["expression"] == ["Encounter.location"]


def test_concurrent_submissions_make_one_claim(app: Any, server: Any) -> None:
    """Two clients submit the same visit at the same moment over real sockets: both get the
    one Claim (submissions of an Encounter are serialised)."""
    import threading

    client = app.test_client()
    practice(client)
    _established(client)
    visit(client, "race", location="clinic", minutes=25)
    from tests.integration.billing_data import params

    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def go() -> None:
        barrier.wait()
        r = server.http.post(server.url("Encounter/race/$submit-claim"), data=params(),
                             headers=H)
        answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [status for status, _ in answers] == [200] * 4
    ids = {tuple(p["resource"]["id"] for p in body["parameter"]) for _, body in answers}
    assert len(ids) == 1
    total = client.get("/fhir/Claim?encounter=Encounter/race").json["total"]
    assert total == 2  # the professional and the facility claim, once


def test_a_bad_table_stops_the_server_naming_it(store: ResourceStore, db_url: str,
                                                tmp_path: Path) -> None:
    from operations.billing.tables import TableError

    (tmp_path / "acme-fees.json").write_text('{"kind": "fees", "payer": "acme"')
    with pytest.raises(TableError, match="acme-fees.json"):
        create_app(Config(db_url=db_url, billing_tables=(str(tmp_path),)), store=store)


def test_fhirpy_submits_a_claim_and_reads_it_back(app: Any, server: Any) -> None:
    """fhirpy, a third-party client, invokes the operation on a live server and finds the
    stored Claim and ClaimResponse by search; a refusal reaches it as an OperationOutcome."""
    from fhirpy import SyncFHIRClient
    from fhirpy.base.exceptions import OperationOutcome

    client = app.test_client()
    practice(client)
    _established(client)
    visit(client, "fp", minutes=25)
    fhir = SyncFHIRClient(server.base)
    out = fhir.resource("Encounter", id="fp").execute(
        "$submit-claim", method="post", data={"resourceType": "Parameters"})
    claim = next(p["resource"] for p in out["parameter"] if p["name"] == "claim")
    found = fhir.resources("Claim").search(encounter="Encounter/fp", status="active").fetch()
    assert [c.id for c in found] == [claim["id"]]
    [response] = fhir.resources("ClaimResponse").search(request=f"Claim/{claim['id']}").fetch()
    assert response["outcome"] == "complete"
    visit(client, "fp2", status="in-progress")
    with pytest.raises(OperationOutcome) as err:
        fhir.resource("Encounter", id="fp2").execute(
            "$submit-claim", method="post", data={"resourceType": "Parameters"})
    assert "in-progress" in str(err.value)


def test_from_appointment_through_the_video_visit_to_the_837p(client: FlaskClient) -> None:
    """The README's worked example with the real visit operations: $start-visit, $end-visit,
    the patient's location and reason added, $submit-claim, $export-837p."""
    from datetime import UTC, datetime, timedelta

    practice(client)
    _established(client)
    now = datetime.now(UTC)
    appointment = {
        "resourceType": "Appointment", "id": "appt", "status": "booked",
        "extension": [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/"
                              "extension-Appointment.virtualService",
                       "extension": [{"url": "channelType", "valueCoding": {
                           "system": CHANNEL, "code": "audio-video"}}]}],
        "start": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (now + timedelta(minutes=35)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "participant": [{"actor": {"reference": "Patient/pat"}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/doc"}, "status": "accepted"}]}
    put(client, appointment)
    empty = json.dumps({"resourceType": "Parameters"})
    r = client.post("/fhir/Appointment/appt/$start-visit", headers=H, data=empty)
    assert r.status_code == 200, r.json
    enc = next(p["valueReference"]["reference"] for p in r.json["parameter"]
               if p["name"] == "encounter")
    assert client.post(f"/fhir/{enc}/$end-visit", headers=H, data=empty).status_code == 200
    r = submit(client, enc.split("/")[1], procedure="99213")
    assert r.status_code == 422 and r.json["issue"][0]["expression"] == ["diagnosis"]
    r = submit(client, enc.split("/")[1], procedure="99213", diagnosis=["E11.9"])
    assert r.status_code == 422 and r.json["issue"][0]["expression"] == ["Encounter.location"]
    r = client.patch(f"/fhir/{enc}", headers={"Content-Type": "application/json-patch+json"},
                     data=json.dumps([
                         {"op": "add", "path": "/location",
                          "value": [{"location": {"reference": "Location/clinic"}}]},
                         {"op": "add", "path": "/reasonCode", "value": [
                             {"coding": [{"system": ICD, "code": "E11.9"}]}]}]))
    assert r.status_code == 200, r.json
    claims, responses = outputs(submit(client, enc.split("/")[1], procedure="99213"))
    assert [_code(c["item"][0]) for c in claims] == ["99213", "Q3014"]
    assert _mods(claims[0]["item"][0]) == ["95"] and _pos(claims[0]["item"][0]) == "02"
    assert all(r["outcome"] == "complete" for r in responses)
    for claim in claims:
        _export(client, claim["id"])
