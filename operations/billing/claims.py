"""R4 Claims from a plan, modelled on the CARIN Blue Button professional claim
(https://hl7.org/fhir/R4/claim.html,
https://hl7.org/fhir/us/carin-bb/StructureDefinition-C4BB-ExplanationOfBenefit-Professional-NonClinician.html).

A Claim carries two telefhir extensions: `claim-role` (distant-site or originating-site) and
`claim-fingerprint`, a hash of everything billed, which tells an unchanged resubmission (same
Claim) from a correction (replacement Claim, related.relationship `prior`)."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import orjson

from operations.billing.model import ICD10CM, ClaimPlan, Line, Party, VisitFacts
from operations.registry import CANONICAL_BASE
from resources import json_numbers

POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
ROLE_EXT = f"{CANONICAL_BASE}/StructureDefinition/claim-role"
FINGERPRINT_EXT = f"{CANONICAL_BASE}/StructureDefinition/claim-fingerprint"
CLAIM_ID_SYSTEM = f"{CANONICAL_BASE}/sid/patient-control-number"
PAYER_ICN_SYSTEM = f"{CANONICAL_BASE}/sid/payer-claim-control-number"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
DIAGNOSIS_TYPE = "http://terminology.hl7.org/CodeSystem/ex-diagnosistype"
RELATED = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
CARE_TEAM_ROLE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole"
SUPPORTING_INFO = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
TYPE_OF_BILL = "https://www.nubc.org/CodeSystem/TypeOfBill"
PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"


def money(value: Decimal, currency: str) -> dict[str, Any]:
    return {"value": float(value), "currency": currency}


def _display(party: Party) -> str | None:
    r = party.resource
    if r.get("name") and isinstance(r["name"], str):
        return str(r["name"])
    names = r.get("name") or []
    if isinstance(names, list) and names:
        n = names[0]
        return n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip()
    return None


def _ref(party: Party) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": party.ref}
    display = _display(party)
    if display:
        out["display"] = display
    return out


def role_of(claim: dict[str, Any]) -> str | None:
    for ext in claim.get("extension", []):
        if ext.get("url") == ROLE_EXT:
            return str(ext.get("valueCode"))
    return None


def fingerprint_of(claim: dict[str, Any]) -> str | None:
    for ext in claim.get("extension", []):
        if ext.get("url") == FINGERPRINT_EXT:
            return str(ext.get("valueString"))
    return None


def fingerprint(content: dict[str, Any]) -> str:
    """A hash of what is billed (not of when, nor of the ids and links made at write time)."""
    core = {k: v for k, v in content.items()
            if k not in ("id", "meta", "created", "identifier", "related", "extension", "status")}
    return hashlib.sha256(json_numbers.dumps(core, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _item(n: int, line: Line, facts: VisitFacts, currency: str, care_team: bool,
          dx_count: int) -> dict[str, Any]:
    item: dict[str, Any] = {"sequence": n}
    if care_team:
        item["careTeamSequence"] = [1]
    item["diagnosisSequence"] = list(range(1, min(dx_count, 4) + 1))
    if line.revenue_code:
        item["revenue"] = {"coding": [{"system": REVENUE, "code": line.revenue_code}]}
    item["productOrService"] = {"coding": [{"system": line.system, "code": line.code}]}
    if line.modifiers:
        item["modifier"] = [{"coding": [{"system": s, "code": c}]} for s, c in line.modifiers]
    item["servicedDate"] = facts.dos.isoformat()
    if line.place_of_service:
        item["locationCodeableConcept"] = {
            "coding": [{"system": POS_SYSTEM, "code": line.place_of_service}]}
    item["quantity"] = {"value": 1}
    item["unitPrice"] = money(line.amount, currency)
    item["net"] = money(line.amount, currency)
    item["encounter"] = [{"reference": facts.encounter_ref}]
    return item


def build_claim(plan: ClaimPlan, facts: VisitFacts, currency: str) -> dict[str, Any]:
    """The Claim content (no id, created, identifier or related yet)."""
    period = facts.encounter.get("period") or {}
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "status": "active",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": plan.claim_type}]},
        "use": "claim",
        "patient": {"reference": facts.patient_ref},
        "billablePeriod": {k: period[k] for k in ("start", "end") if period.get(k)},
    }
    if facts.payer_ref:
        insurer: dict[str, Any] = {"reference": facts.payer_ref}
        if facts.payer and facts.payer.get("name"):
            insurer["display"] = facts.payer["name"]
        claim["insurer"] = insurer
    claim["provider"] = _ref(plan.provider)
    claim["priority"] = {"coding": [{"system": PRIORITY, "code": "normal"}]}
    if plan.rendering is not None:
        claim["careTeam"] = [{
            "sequence": 1, "provider": _ref(plan.rendering),
            "role": {"coding": [{"system": CARE_TEAM_ROLE, "code": "rendering"}]}}]
    if plan.type_of_bill:
        claim["supportingInfo"] = [{
            "sequence": 1,
            "category": {"coding": [{"system": SUPPORTING_INFO, "code": "typeofbill"}]},
            "code": {"coding": [{"system": TYPE_OF_BILL, "code": plan.type_of_bill}]}}]
    claim["diagnosis"] = [
        {"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD10CM, "code": d}]},
         "type": [{"coding": [{"system": DIAGNOSIS_TYPE,
                               "code": "principal" if i == 1 else "secondary"}]}]}
        for i, d in enumerate(facts.diagnoses, start=1)]
    claim["insurance"] = [{"sequence": 1, "focal": True,
                           "coverage": {"reference": facts.coverage_ref}}]
    claim["item"] = [_item(n, line, facts, currency, plan.rendering is not None,
                           len(facts.diagnoses))
                     for n, line in enumerate(plan.lines, start=1)]
    claim["total"] = money(sum((x.amount for x in plan.lines), Decimal("0.00")), currency)
    return claim


def finish_claim(content: dict[str, Any], claim_id: str, role: str, created: str,
                 prior: dict[str, Any] | None, prior_icn: str | None) -> dict[str, Any]:
    """The Claim to store: id, patient control number, role and fingerprint, and the link to
    the claim it replaces."""
    claim: dict[str, Any] = {"resourceType": "Claim", "id": claim_id}
    claim["extension"] = [{"url": ROLE_EXT, "valueCode": role},
                          {"url": FINGERPRINT_EXT, "valueString": fingerprint(content)}]
    claim["identifier"] = [{"system": CLAIM_ID_SYSTEM, "value": claim_id.replace("-", "")}]
    for k, v in content.items():
        if k != "resourceType":
            claim[k] = v
    claim["created"] = created
    if prior is not None:
        related: dict[str, Any] = {
            "claim": {"reference": f"Claim/{prior['id']}"},
            "relationship": {"coding": [{"system": RELATED, "code": "prior"}]}}
        if prior_icn:
            related["reference"] = {"system": PAYER_ICN_SYSTEM, "value": prior_icn}
        claim["related"] = [related]
    order = ["resourceType", "id", "extension", "identifier", "status", "type", "use", "patient",
             "billablePeriod", "created", "insurer", "provider", "priority", "related",
             "careTeam", "supportingInfo", "diagnosis", "insurance", "item", "total"]
    return {k: claim[k] for k in order if k in claim}
