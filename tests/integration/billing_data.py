"""A small telehealth practice for the billing tests: a Medicare patient, a clinician, a group,
a rural clinic that serves as an originating site, and finished video visits, written through
the FHIR API like any client would."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from operations.billing.codes import npi_check_digit

H = {"Content-Type": "application/fhir+json"}
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
EIN = "urn:oid:2.16.840.1.113883.4.4"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SITE = "https://telefhir.org/fhir/CodeSystem/originating-site-type"
SOPT = "urn:oid:2.16.840.1.113883.3.221.5"
VS = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.virtualService"
CHANNEL = "https://telefhir.org/fhir/CodeSystem/virtual-service-channel"
MBI = "1EG4TE5MK73"  # the CMS example MBI


def npi(base: str) -> str:
    return base + npi_check_digit(base)


def put(client: FlaskClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=H,
                   data=json.dumps(resource))
    assert r.status_code in (200, 201), r.json
    body: dict[str, Any] = r.json
    return body


def practice(client: FlaskClient, **coverage: Any) -> None:
    """Payer, patient, coverage, clinician, group, home and clinic locations."""
    put(client, {"resourceType": "Organization", "id": "medicare", "name": "Medicare Part B",
                 "identifier": [{"type": {"coding": [{"code": "payerid"}]}, "value": "12502"}]})
    put(client, {"resourceType": "Patient", "id": "pat", "gender": "female",
                 "birthDate": "1950-04-02",
                 "name": [{"family": "Ramírez", "given": ["Ana", "Luz"]}],
                 "address": [{"line": ["12 Elm St"], "city": "Springfield", "state": "IL",
                              "postalCode": "62701"}]})
    put(client, {"resourceType": "Coverage", "id": "cov", "status": "active",
                 "type": {"coding": [{"system": SOPT, "code": "1"}]},
                 "subscriberId": MBI, "beneficiary": {"reference": "Patient/pat"},
                 "relationship": {"coding": [{"code": "self"}]},
                 "period": {"start": "2025-01-01"},
                 "payor": [{"reference": "Organization/medicare"}], **coverage})
    put(client, {"resourceType": "Practitioner", "id": "doc",
                 "identifier": [{"system": NPI, "value": npi("123456789")},
                                {"system": EIN, "value": "12-3456789"}],
                 "name": [{"family": "Osler", "given": ["William"]}],
                 "telecom": [{"system": "phone", "value": "(217) 555-0100"}],
                 "address": [{"line": ["1 Main St"], "city": "Springfield", "state": "IL",
                              "postalCode": "62701-1234"}]})
    put(client, {"resourceType": "Organization", "id": "clinic-org", "name": "Prairie Clinic",
                 "identifier": [{"system": NPI, "value": npi("198765432")},
                                {"system": EIN, "value": "98-7654321"}],
                 "telecom": [{"system": "phone", "value": "217-555-0199"}],
                 "address": [{"line": ["5 Rural Rd"], "city": "Pawnee", "state": "IL",
                              "postalCode": "626770001"}]})
    put(client, {"resourceType": "Location", "id": "home", "status": "active",
                 "type": [{"coding": [{"system": ROLE, "code": "PTRES"}]}]})
    put(client, {"resourceType": "Location", "id": "clinic", "status": "active",
                 "type": [{"coding": [{"system": SITE, "code": "office"}]}],
                 "managingOrganization": {"reference": "Organization/clinic-org"},
                 "address": {"line": ["5 Rural Rd"], "city": "Pawnee", "state": "IL",
                             "postalCode": "62677"}})


def visit(client: FlaskClient, enc_id: str, *, start: str = "2026-03-10T09:00:00-06:00",
          minutes: int = 25, location: str | None = "home", status: str = "finished",
          channel: str | None = "audio-video", dx: str | None = "E11.9",
          **extra: Any) -> dict[str, Any]:
    """A finished virtual visit of Patient/pat with Practitioner/doc."""
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": enc_id, "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "subject": {"reference": "Patient/pat"},
        "participant": [{"type": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "PPRF"}]}], "individual": {"reference": "Practitioner/doc"}}],
        "period": {"start": start},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org",
                   "code": "min"},
    }
    if channel:
        enc["extension"] = [{"url": VS, "extension": [
            {"url": "channelType", "valueCoding": {"system": CHANNEL, "code": channel}}]}]
    if location:
        enc["location"] = [{"location": {"reference": f"Location/{location}"}}]
    if dx:
        enc["reasonCode"] = [{"coding": [{"system": ICD, "code": dx}]}]
    enc.update(extra)
    return put(client, {k: v for k, v in enc.items() if v is not None})


def params(**values: Any) -> str:
    """A Parameters body: procedure (code), diagnosis (list of codes), modality, coverage,
    provider (references)."""
    p: list[dict[str, Any]] = []
    if "procedure" in values:
        code = values["procedure"]
        p.append({"name": "procedure", "valueCoding": {
            "system": CPT if code[0].isdigit() else HCPCS, "code": code}})
    for d in values.get("diagnosis", []):
        p.append({"name": "diagnosis", "valueCodeableConcept": {
            "coding": [{"system": ICD, "code": d}]}})
    if "modality" in values:
        p.append({"name": "modality", "valueCode": values["modality"]})
    for name in ("coverage", "provider"):
        if name in values:
            p.append({"name": name, "valueReference": {"reference": values[name]}})
    return json.dumps({"resourceType": "Parameters", "parameter": p})


def submit(client: FlaskClient, enc_id: str, **values: Any) -> Any:
    return client.post(f"/fhir/Encounter/{enc_id}/$submit-claim", headers=H,
                       data=params(**values))


def outputs(resp: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["resourceType"] == "Parameters"
    claims = [p["resource"] for p in body["parameter"] if p["name"] == "claim"]
    responses = [p["resource"] for p in body["parameter"] if p["name"] == "claimResponse"]
    return claims, responses


def adjudication(response: dict[str, Any], code: str, item: int = 1) -> float | None:
    for adj in response["item"][item - 1]["adjudication"]:
        if adj["category"]["coding"][0]["code"] == code:
            return adj.get("amount", {}).get("value", adj.get("value"))
    return None


def diagnostics(resp: Any) -> str:
    assert resp.json["resourceType"] == "OperationOutcome", resp.json
    return " ".join(i.get("diagnostics", "") for i in resp.json["issue"])
