"""Each mapped trigger event, ingested over HTTP with $ingest-hl7v2 (stored as the MLLP path
stores it) and read back through the FHIR API: identifiers, names, birth date, gender,
address, codes, values with units, times with their zones and the references between the
resources, each checked against the message as the `hl7` package reads it. On SQLite and
PostgreSQL (the `client` fixture)."""

from __future__ import annotations

import base64
import json
from typing import Any

import hl7
import pytest
from flask.testing import FlaskClient

from tests.integration.hl7_support import original_mode, sample, set_field

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
BASE = "https://telefhir.org/fhir/sid/hl7v2/"


def ingest(client: FlaskClient, text: str) -> dict[str, Any]:
    resp = client.post("/fhir/$ingest-hl7v2", headers=FHIR, data=json.dumps({
        "resourceType": "Parameters", "parameter": [{"name": "message", "valueString": text}]}))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    out: dict[str, Any] = {}
    for p in resp.get_json()["parameter"]:
        value = next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if k != "reference" else v for k, v in out.items()}


def search(client: FlaskClient, query: str) -> list[dict[str, Any]]:
    resp = client.get(f"/fhir/{query}", headers=FHIR)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [e["resource"] for e in resp.get_json().get("entry", [])
            if e["search"]["mode"] == "match"]


def read(client: FlaskClient, ref: str) -> dict[str, Any]:
    resp = client.get(f"/fhir/{ref}", headers=FHIR)
    assert resp.status_code == 200, ref
    return dict(resp.get_json())


def v2(text: str) -> hl7.Message:
    return hl7.parse(text)


def field(msg: hl7.Message, seg: str, f: int, comp: int = 1, rep: int = 1,
          sub: int = 1) -> str:
    return str(msg.extract_field(seg, 1, f, rep, comp, sub))


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def patient_of(client: FlaskClient, text: str) -> dict[str, Any]:
    """The Patient of the message, found by PID-3's first identifier value."""
    msg = v2(text)
    return only(search(client, f"Patient?identifier={field(msg, 'PID', 3)}"))


# -- ADT --------------------------------------------------------------------------------

ADT_STATUS = {"A01": "in-progress", "A02": "in-progress", "A03": "finished",
              "A04": "planned", "A05": "planned", "A06": "in-progress", "A07": "in-progress",
              "A08": None, "A11": "cancelled", "A13": "in-progress"}


@pytest.mark.parametrize("event", [*ADT_STATUS, "A28", "A31"])
def test_adt_patient_and_encounter(client: FlaskClient, event: str) -> None:
    text = original_mode(sample(f"ADT-{event}-01.hl7", f"ADT-{event}"))
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    msg = v2(text)
    pat = patient_of(client, text)
    mrn = next(i for i in pat["identifier"] if i["value"] == field(msg, "PID", 3))
    namespace = field(msg, "PID", 3, 4)
    assert mrn["system"] == BASE + namespace
    assert mrn["type"]["coding"][0]["code"] == field(msg, "PID", 3, 5)
    name = pat["name"][0]
    assert name["family"] == field(msg, "PID", 5, 1)
    assert name["given"][0] == field(msg, "PID", 5, 2)
    dob = field(msg, "PID", 7)
    assert pat["birthDate"] == f"{dob[:4]}-{dob[4:6]}-{dob[6:8]}"
    assert pat["gender"] == {"M": "male", "F": "female"}[field(msg, "PID", 8)]
    addr = pat["address"][0]
    assert addr["city"] == field(msg, "PID", 11, 3).strip()
    assert addr["state"] == field(msg, "PID", 11, 4)
    assert addr["postalCode"] == field(msg, "PID", 11, 5)
    encounters = search(client, f"Encounter?subject=Patient/{pat['id']}")
    if event in ("A28", "A31"):
        assert encounters == []
        return
    enc = only(encounters)
    assert enc["identifier"][0]["value"] == field(msg, "PV1", 19)
    if ADT_STATUS[event]:
        assert enc["status"] == ADT_STATUS[event]
    if event == "A06":
        assert enc["class"]["code"] == "IMP"
    if event == "A07":
        assert enc["class"]["code"] == "AMB"
    admit = field(msg, "PV1", 44)
    if admit:
        start = enc["period"]["start"]
        assert start.startswith(f"{admit[:4]}-{admit[4:6]}-{admit[6:8]}T{admit[8:10]}:")
        assert start.endswith(admit[-5:-2] + ":" + admit[-2:])  # the zone, kept
    attending = field(msg, "PV1", 7)
    if attending:
        doc = next(p for p in enc["participant"]
                   if p["type"][0]["coding"][0]["code"] == "ATND")
        prac = read(client, doc["individual"]["reference"])
        assert prac["identifier"][0]["value"] == attending
        assert prac["name"][0]["family"] == field(msg, "PV1", 7, 2)
    loc = read(client, enc["location"][0]["location"]["reference"])
    assert loc["resourceType"] == "Location"
    assert field(msg, "PV1", 3, 2) in loc["identifier"][0]["value"]


def test_adt_related_person_and_coverage(client: FlaskClient) -> None:
    text = original_mode(sample("ADT01-23.hl7", "NK1-IN1"))
    assert ingest(client, text)["code"] == "AA"
    msg = v2(text)
    pat = patient_of(client, text)
    rp = only(search(client, f"RelatedPerson?patient=Patient/{pat['id']}"))
    assert rp["name"][0]["family"] == field(msg, "NK1", 2, 1)
    assert rp["name"][0]["given"] == [field(msg, "NK1", 2, 2)]
    assert rp["relationship"][0]["coding"][0]["code"] == field(msg, "NK1", 3)
    assert rp["address"][0]["city"] == field(msg, "NK1", 4, 3)
    coverages = search(client, f"Coverage?beneficiary=Patient/{pat['id']}")
    # IN1|1 MEDICARE, IN1|2 MEDICAL MUTUAL CALIF.; IN1|3 SELF PAY has a payor name too
    payors = sorted(read(client, c["payor"][0]["reference"])["name"] for c in coverages)
    assert payors == ["MEDICAL MUTUAL CALIF.", "MEDICARE", "SELF PAY"]
    medicare = next(c for c in coverages if c.get("subscriberId") == "123121234A")
    assert medicare["period"]["start"] == "1989-10-01"


def test_a40_merge(client: FlaskClient) -> None:
    old = original_mode(sample("ADT01-23.hl7", "M1"))
    old = set_field(old, "PID", 3, "56789^^^BCBS^MR")
    assert ingest(client, old)["code"] == "AA"
    merged = only(search(client, "Patient?identifier=56789"))
    enc = only(search(client, f"Encounter?subject=Patient/{merged['id']}"))
    text = original_mode(sample("ADT-A40-01.hl7", "M2"))
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    survivor = only(search(client, "Patient?identifier=12345"))
    merged = read(client, f"Patient/{merged['id']}")
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"},
                               "type": "replaced-by"}]
    assert {"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"} in \
        survivor["link"]
    assert read(client, f"Encounter/{enc['id']}")["subject"]["reference"] == \
        f"Patient/{survivor['id']}"
    assert search(client, f"Encounter?subject=Patient/{merged['id']}") == []


# -- ORU ---------------------------------------------------------------------------------

def test_oru_observations_and_report(client: FlaskClient) -> None:
    text = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7", "ORU-1"))
    # add the value types the sample lacks: SN, DT, TS and ST
    text = text.rstrip("\r") + "\r" + "\r".join([
        "OBX|29|SN|11011-4^HCV RNA^LN||>^100000|[iU]/mL^IU/mL^UCUM|||||F",
        "OBX|30|SN|5196-1^Titer^LN||^1^:^64||||||F",
        "OBX|31|DT|11778-8^Delivery date^LN||20110910||||||P",
        "OBX|32|TS|8665-2^Last menstrual period^LN||201012011030-0500||||||C",
        "OBX|33|ST|8251-1^Comment^LN||Hemolyzed \\T\\ lipemic||||||F",
    ]) + "\r"
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    msg = v2(text)
    pat = patient_of(client, text)
    report = only(search(client, f"DiagnosticReport?subject=Patient/{pat['id']}"))
    assert report["code"]["coding"][0] == {"system": "http://loinc.org", "code": "57021-8",
                                           "display": field(msg, "OBR", 4, 2)}
    assert report["identifier"][0]["value"] == field(msg, "OBR", 3)
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2011-01-03T14:34:28-08:00"
    assert len(report["result"]) == 33
    obs = {o["code"]["coding"][0]["code"]: o for o in
           (read(client, r["reference"]) for r in report["result"])}
    rbc = obs["26453-1"]
    assert rbc["subject"]["reference"] == f"Patient/{pat['id']}"
    assert rbc["valueQuantity"] == {"value": 4.41, "unit": "million per microliter",
                                    "system": "http://unitsofmeasure.org", "code": "10*6/uL"}
    assert rbc["referenceRange"][0]["low"]["value"] == 4.3
    assert rbc["referenceRange"][0]["high"]["value"] == 6.2
    assert rbc["interpretation"][0]["coding"][0]["code"] == "N"
    assert rbc["status"] == "final"
    assert rbc["effectiveDateTime"] == "2011-01-03T14:34:28-08:00"
    assert obs["26464-8"]["interpretation"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "HH"}
    assert obs["38892-6"]["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct", "code": "260348001",
        "display": "Present ++ out of ++++"}
    assert obs["6742-1"]["valueString"] == "Many spherocytes present."
    assert obs["11011-4"]["valueQuantity"] == {"value": 100000, "comparator": ">",
                                               "unit": "IU/mL", "code": "[iU]/mL",
                                               "system": "http://unitsofmeasure.org"}
    assert obs["5196-1"]["valueRatio"]["numerator"]["value"] == 1
    assert obs["5196-1"]["valueRatio"]["denominator"]["value"] == 64
    assert obs["11778-8"]["valueDateTime"] == "2011-09-10"
    assert obs["11778-8"]["status"] == "preliminary"
    assert obs["8665-2"]["valueDateTime"] == "2010-12-01T10:30:00-05:00"
    assert obs["8665-2"]["status"] == "corrected"
    assert obs["8251-1"]["valueString"] == "Hemolyzed & lipemic"
    # the Observations are searchable by value in canonical units
    assert len(search(client, "Observation?code=http://loinc.org|718-7"
                              "&value-quantity=12.5|http://unitsofmeasure.org|g/mL")) == 1


def test_same_patient_through_adt_oru_and_siu_is_one_patient(client: FlaskClient) -> None:
    adt = original_mode(sample("ADT01-23.hl7", "SAME-1"))
    oru = set_field(original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7", "SAME-2")),
                    "PID", 3, "10006579^^^1^MR^1")
    siu = set_field(original_mode(sample("SIU-S12-01.hl7", "SAME-3")), "PID", 3,
                    "10006579^^^1^MR^1")
    for text in (adt, oru, siu):
        assert ingest(client, text)["status"] == "done"
    pat = only(search(client, "Patient?identifier=10006579"))
    assert pat["name"][0]["family"] == "EVERYMAN"  # the SIU, the newest message (MSH-7)
    # the 28 results of the ORU and the heart rate OBX of the SIU
    assert len(search(client, f"Observation?subject=Patient/{pat['id']}")) == 29
    assert len(search(client, f"Encounter?subject=Patient/{pat['id']}")) == 1
    appt = only(search(client, f"Appointment?patient=Patient/{pat['id']}"))
    assert appt["status"] == "booked"


# -- SIU ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("event", "status"), [("S12", "booked"), ("S13", "booked"),
                                               ("S14", "booked"), ("S15", "cancelled"),
                                               ("S26", "noshow")])
def test_siu_appointment(client: FlaskClient, event: str, status: str) -> None:
    text = original_mode(sample(f"SIU-{event}-01.hl7", f"SIU-{event}"))
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    msg = v2(text)
    pat = patient_of(client, text)
    appt = only(search(client, f"Appointment?identifier={field(msg, 'SCH', 2)}"))
    assert appt["status"] == status
    assert {"reference": f"Patient/{pat['id']}"} in [p["actor"] for p in appt["participant"]]
    start = field(msg, "TQ1", 7)
    assert appt["start"] == (f"{start[:4]}-{start[4:6]}-{start[6:8]}T{start[8:10]}:"
                             f"{start[10:12]}:{start[12:14]}{start[14:17]}:{start[17:]}")
    practitioners = [read(client, p["actor"]["reference"]) for p in appt["participant"]
                     if p["actor"]["reference"].startswith("Practitioner/")]
    assert field(msg, "AIP", 3) in [p["identifier"][0]["value"] for p in practitioners]
    slot = read(client, appt["slot"][0]["reference"])
    assert slot["status"] == ("free" if status in ("cancelled", "noshow") else "busy")
    assert slot["start"] == appt["start"]
    schedule = read(client, slot["schedule"]["reference"])
    assert schedule["actor"][0]["reference"].startswith("Practitioner/")


def test_siu_reschedule_then_cancel_updates_one_appointment(client: FlaskClient) -> None:
    book = original_mode(sample("SIU-S12-01.hl7", "R1"))
    resched = set_field(set_field(book, "MSH", 9, "SIU^S13^SIU_S13"), "MSH", 10, "R2")
    resched = set_field(resched, "TQ1", 7, "20210925093000+0215")
    cancel = set_field(set_field(book, "MSH", 9, "SIU^S15^SIU_S15"), "MSH", 10, "R3")
    for text in (book, resched, cancel):
        assert ingest(client, text)["status"] == "done"
    appt = only(search(client, "Appointment?identifier=36996"))
    assert appt["status"] == "cancelled"
    assert appt["meta"]["versionId"] == "3"


# -- RDE / OMP / MDM ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["RDE", "OMP"])
def test_pharmacy_order_to_medication_request(client: FlaskClient, kind: str) -> None:
    text = original_mode(sample("RDE-O11-01.hl7", f"{kind}-1"))
    if kind == "OMP":  # the same order as an OMP O09 (RXO instead of RXE)
        lines = []
        for line in text.split("\r"):
            if line.startswith("RXE|"):
                f = line.split("|")
                line = "|".join(["RXO", f[2], f[3], f[4], f[5], f[6], f[7]])
            elif line.startswith("RXO|"):
                continue
            lines.append(line)
        text = set_field("\r".join(lines), "MSH", 9, "OMP^O09^OMP_O09")
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    msg = v2(text)
    pat = patient_of(client, text)
    req = only(search(client, f"MedicationRequest?subject=Patient/{pat['id']}"))
    assert req["status"] == "active" and req["intent"] == "order"
    assert req["identifier"][0]["value"] == field(msg, "ORC", 2)
    code = req["medicationCodeableConcept"]["coding"][0]
    assert code["system"] == "http://hl7.org/fhir/sid/ndc"
    assert code["code"] == "0143963401"
    dose = req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["value"] == 5 and dose["unit"] == "mg/hr"
    assert req["authoredOn"] == "2019-11-04T06:27:26+02:15"


def test_mdm_t02_document_reference(client: FlaskClient) -> None:
    text = original_mode(sample("MDM-T02-02.hl7", "MDM-1"))
    result = ingest(client, text)
    assert (result["code"], result["status"]) == ("AA", "done"), result
    msg = v2(text)
    pat = patient_of(client, text)
    doc = only(search(client, f"DocumentReference?subject=Patient/{pat['id']}"))
    assert doc["masterIdentifier"]["value"] == field(msg, "TXA", 12)
    attachment = doc["content"][0]["attachment"]
    data = base64.b64decode(attachment["data"]).decode()
    first_obx = next(s for s in text.split("\r") if s.startswith("OBX|"))
    assert first_obx.split("|")[5].split("~")[0].replace("\\T\\", "&")[:20] in data
    assert doc["status"] == "current"


def test_mdm_with_embedded_pdf(client: FlaskClient) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    text = original_mode(sample("MDM-T02-01.hl7", "MDM-PDF"))
    text = text.replace("|ED|02585^TransthoracicEcho^PCV4||^application^pdf^Base64^|",
                        f"|ED|02585^TransthoracicEcho^PCV4||^application^pdf^Base64^{pdf}|")
    assert ingest(client, text)["status"] == "done"
    doc = only(search(client, "DocumentReference?identifier="
                              "1.2.840.317.5947431.51.20080131160038"))
    pdfs = [c["attachment"] for c in doc["content"]
            if c["attachment"]["contentType"] == "application/pdf"]
    assert base64.b64decode(pdfs[0]["data"]) == b"%PDF-1.4 tiny"
