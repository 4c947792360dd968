"""`GET [base]/Claim/[id]/$export-837p`: one stored professional Claim as an ANSI X12 837P
005010X222A1 interchange, `application/edi-x12`
(OperationDefinition https://telefhir.org/fhir/OperationDefinition/Claim-export-837p).

The Claim and what it references (Patient, Coverage, payer Organization, billing and rendering
providers) are read through the store; what the 837P needs and the Claim lacks (a tax id, a
ZIP+4, a member id of the right shape) is a 422 naming it, checked before anything is written
(operations.billing.codes covers what pyx12 does not: NPI check digits, code formats, at most
12 diagnoses, 50 lines and 4 modifiers). The frequency code is 1 for an original claim, 7 for a
replacement (Claim.related `prior`) and 8 for a cancelled claim, the last two with REF*F8."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fhir_server.context import Context
from fhir_server.request import FhirResponse
from fhir_server.responses import gone, not_found
from operations.billing import codes
from operations.billing.claims import CLAIM_ID_SYSTEM, PAYER_ICN_SYSTEM, POS_SYSTEM
from operations.billing.control_numbers import next_control_number
from operations.billing.gather import npi_of, ref_key
from operations.billing.model import (
    ICD10CM,
    MBI_SYSTEM,
    SSN_SYSTEM,
    TAX_ID_SYSTEM,
    unprocessable,
)
from operations.billing.tables import load_tables
from operations.billing.x12 import Address, Claim837, Name, ServiceLine, write_837p
from operations.registry import OperationCall, operation
from resources import json_numbers

EDI_X12 = "application/edi-x12"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_PAYER_ID_TYPES = {"payerid", "NIIP", "PAYERID"}


def _read(ctx: Context, key: str | None, what: str) -> dict[str, Any]:
    body = None
    if key:
        t, i = key.split("/", 1)
        stored = (ctx.tx or ctx.store).read(t, i)
        if stored is not None and stored.body is not None and not stored.deleted:
            body = json_numbers.loads(stored.body)
    if body is None:
        raise unprocessable(f"The {what} {key or '(none)'} of the Claim is not known", what)
    result: dict[str, Any] = body
    return result


def _name(resource: dict[str, Any], what: str) -> Name:
    if resource.get("resourceType") == "Organization":
        if not resource.get("name"):
            raise unprocessable(f"The {what} Organization/{resource.get('id')} has no name", what)
        return Name("2", str(resource["name"]))
    names = resource.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = official.get("family")
    if not family:
        raise unprocessable(f"The {what} {resource.get('resourceType')}/{resource.get('id')} "
                            "has no family name", what)
    return Name("1", str(family), " ".join(official.get("given", [])[:1]))


def _address(resource: dict[str, Any], what: str, zip9: bool) -> Address:
    addrs = resource.get("address") or []
    addrs = addrs if isinstance(addrs, list) else [addrs]
    a = next((x for x in addrs if x.get("line") and x.get("city") and x.get("state")
              and x.get("postalCode")), None)
    if a is None:
        raise unprocessable(f"The {what} {resource.get('resourceType')}/{resource.get('id')} "
                            "needs an address with line, city, state and postalCode", what)
    postal = re.sub(r"[^0-9]", "", str(a["postalCode"]))
    if zip9 and len(postal) != 9:
        raise unprocessable(f"The {what}'s postal code must be the nine-digit ZIP+4 in an "
                            f"837P, not '{a['postalCode']}'", what)
    if len(postal) not in (5, 9):
        raise unprocessable(f"The {what}'s postal code '{a['postalCode']}' is not a US ZIP", what)
    return Address(str(a["line"][0]), str(a["city"]), str(a["state"]), postal)


def _tax_id(resource: dict[str, Any]) -> tuple[str, str]:
    for ident in resource.get("identifier", []):
        value = re.sub(r"[^0-9]", "", str(ident.get("value", "")))
        if ident.get("system") == TAX_ID_SYSTEM and len(value) == 9:
            return "EI", value
        if ident.get("system") == SSN_SYSTEM and len(value) == 9:
            return "SY", value
    raise unprocessable(f"The billing provider {resource.get('resourceType')}/"
                        f"{resource.get('id')} has no tax id (an identifier with system "
                        f"{TAX_ID_SYSTEM} or {SSN_SYSTEM}, nine digits)", "Claim.provider")


def _contact(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    phone = email = None
    for t in resource.get("telecom", []):
        if t.get("system") == "phone" and phone is None:
            digits = re.sub(r"[^0-9]", "", str(t.get("value", "")))
            if len(digits) == 11 and digits.startswith("1"):
                digits = digits[1:]
            if len(digits) == 10:
                phone = digits
        if t.get("system") == "email" and email is None and t.get("value"):
            email = str(t["value"])
    if phone is None and email is None:
        raise unprocessable("The billing provider needs a phone (10 digits) or email telecom "
                            "for the 837P submitter contact (PER)", "Claim.provider")
    return phone, email


def _member_id(coverage: dict[str, Any], medicare: bool) -> str:
    candidates = [coverage.get("subscriberId")]
    for ident in coverage.get("identifier", []):
        types = {c.get("code") for c in (ident.get("type") or {}).get("coding", [])
                 if c.get("system") == _V2_0203}
        if ident.get("system") == MBI_SYSTEM or "MB" in types:
            candidates.insert(0, ident.get("value"))
    member = next((str(c) for c in candidates if c), None)
    if member is None:
        raise unprocessable("The Coverage has no member id (subscriberId, or an identifier of "
                            "type MB / system " + MBI_SYSTEM + ")", "Claim.insurance.coverage")
    if medicare and not codes.valid_mbi(member):
        raise unprocessable(f"'{member}' is not a Medicare beneficiary identifier (MBI)",
                            "Claim.insurance.coverage")
    return member.replace("-", "").upper()


def _payer_id(payer: dict[str, Any]) -> str:
    for ident in payer.get("identifier", []):
        types = {c.get("code") for c in (ident.get("type") or {}).get("coding", [])}
        if types & _PAYER_ID_TYPES and ident.get("value"):
            return str(ident["value"])
    for ident in payer.get("identifier", []):
        if ident.get("value"):
            return str(ident["value"])
    raise unprocessable(f"The payer Organization/{payer.get('id')} has no identifier to use as "
                        "the payer id (2010BB NM109)", "Claim.insurer")


def _coding(cc: Any) -> tuple[str | None, str | None]:
    c = ((cc or {}).get("coding") or [{}])[0]
    return c.get("system"), c.get("code")


def build(ctx: Context, claim: dict[str, Any]) -> Claim837:
    """The checked 837P content of a stored Claim, or a 422 naming what is missing."""
    ctype = _coding(claim.get("type"))[1]
    if ctype != "professional":
        raise unprocessable(f"Claim/{claim['id']} is an {ctype} claim: the 837P carries "
                            "professional claims (an institutional claim belongs on an 837I, "
                            "which telefhir does not write)", "Claim.type")
    patient = _read(ctx, ref_key(claim.get("patient")), "Claim.patient")
    coverage = _read(ctx, ref_key(claim["insurance"][0].get("coverage")),
                     "Claim.insurance.coverage")
    payer = _read(ctx, ref_key(claim.get("insurer")), "Claim.insurer")
    billing = _read(ctx, ref_key(claim.get("provider")), "Claim.provider")
    rel = _coding(coverage.get("relationship"))[1]
    if rel not in (None, "self"):
        raise unprocessable("The export writes claims where the patient is the subscriber "
                            f"(Coverage.relationship self), not '{rel}'", "Claim.insurance")
    start = str((claim.get("billablePeriod") or {}).get("start", ""))[:10]
    if not start:
        raise unprocessable("The Claim has no billablePeriod.start", "Claim.billablePeriod")
    _, rules = load_tables(tuple(ctx.config.billing_tables)).rules_for(
        coverage, payer, datetime.fromisoformat(start).date())
    x12 = (rules.get("x12") if rules else None) or {}
    filing = x12.get("claimFilingIndicator")
    if not filing:
        raise unprocessable("No payer table gives the claim filing indicator (SBR09) for this "
                            "Coverage", "Claim.insurance")
    billing_npi = npi_of(billing)
    if not billing_npi or not codes.valid_npi(billing_npi):
        raise unprocessable(f"The billing provider's NPI '{billing_npi}' is missing or fails "
                            "the check digit", "Claim.provider")
    rendering = rendering_npi = None
    for member in claim.get("careTeam", []):
        key = ref_key(member.get("provider"))
        if key and key != ref_key(claim.get("provider")):
            body = _read(ctx, key, "Claim.careTeam.provider")
            rendering_npi = npi_of(body)
            if not rendering_npi or not codes.valid_npi(rendering_npi):
                raise unprocessable(f"The rendering provider {key} has no valid NPI",
                                    "Claim.careTeam")
            rendering = _name(body, "rendering provider")
        break
    dx = []
    for d in claim.get("diagnosis", []):
        system, code = _coding(d.get("diagnosisCodeableConcept"))
        if system != ICD10CM or not code or not codes.valid_icd10cm(code):
            raise unprocessable(f"Diagnosis {d.get('sequence')} is not an ICD-10-CM code",
                                "Claim.diagnosis")
        dx.append(codes.icd_for_x12(code))
    if not dx or len(dx) > codes.MAX_DIAGNOSES:
        raise unprocessable(f"An 837P carries 1 to {codes.MAX_DIAGNOSES} diagnoses, not "
                            f"{len(dx)}", "Claim.diagnosis")
    items = claim.get("item", [])
    if not items or len(items) > codes.MAX_LINES:
        raise unprocessable(f"An 837P carries 1 to {codes.MAX_LINES} service lines, not "
                            f"{len(items)}", "Claim.item")
    pos = _coding(items[0].get("locationCodeableConcept"))
    if pos[0] != POS_SYSTEM or not pos[1] or not re.fullmatch(r"[0-9]{2}", pos[1]):
        raise unprocessable("The first Claim.item has no place of service code",
                            "Claim.item.locationCodeableConcept")
    lines = []
    for item in items:
        _, code = _coding(item.get("productOrService"))
        if not code or not codes.valid_procedure(code):
            raise unprocessable(f"Item {item.get('sequence')}: '{code}' is not a CPT/HCPCS code",
                                "Claim.item.productOrService")
        mods = [str(_coding(m)[1]) for m in item.get("modifier", [])]
        if len(mods) > codes.MAX_MODIFIERS or not all(codes.valid_modifier(m) for m in mods):
            raise unprocessable(f"Item {item.get('sequence')}: at most {codes.MAX_MODIFIERS} "
                                "two-character modifiers", "Claim.item.modifier")
        pointers = list(item.get("diagnosisSequence", []))[:4]
        if not pointers or any(not 1 <= p <= len(dx) for p in pointers):
            raise unprocessable(f"Item {item.get('sequence')}: diagnosis pointers must name 1 to "
                                "4 of the claim's diagnoses", "Claim.item.diagnosisSequence")
        item_pos = _coding(item.get("locationCodeableConcept"))[1]
        served = str(item.get("servicedDate") or start)[:10].replace("-", "")
        lines.append(ServiceLine(code, mods, Decimal(str(item["net"]["value"])),
                                 Decimal(str((item.get("quantity") or {}).get("value", 1))),
                                 pointers, served,
                                 item_pos if item_pos and item_pos != pos[1] else None))
    frequency, prior_icn = "1", None
    if claim.get("status") == "cancelled":
        frequency = "8"
        prior_icn = _own_icn(ctx, claim["id"])
    elif claim.get("related"):
        frequency = "7"
        prior_icn = ((claim["related"][0].get("reference") or {}).get("value"))
    if frequency != "1" and not prior_icn:
        raise unprocessable("A replacement or void needs the payer claim control number of the "
                            "original claim (REF*F8)", "Claim.related.reference")
    gender = {"female": "F", "male": "M"}.get(str(patient.get("gender")), "U")
    if not patient.get("birthDate") or len(str(patient["birthDate"])) != 10:
        raise unprocessable("The patient needs a full birthDate for the 837P (DMG)",
                            "Claim.patient")
    phone, email = _contact(billing)
    billing_name = _name(billing, "billing provider")
    submitter_id = ctx.config.x12_submitter_id or billing_npi
    receiver_id = _payer_id(payer)
    pcn = next((i["value"] for i in claim.get("identifier", [])
                if i.get("system") == CLAIM_ID_SYSTEM), claim["id"].replace("-", ""))
    return Claim837(
        submitter_id=submitter_id, submitter=billing_name,
        contact_name=billing_name.last, contact_phone=phone, contact_email=email,
        receiver_id=receiver_id,
        receiver_name=str(x12.get("payerName") or payer.get("name") or "PAYER"),
        billing=billing_name, billing_npi=billing_npi,
        billing_address=_address(billing, "billing provider", zip9=True),
        billing_tax_qualifier=_tax_id(billing)[0], billing_tax_id=_tax_id(billing)[1],
        filing_indicator=str(filing),
        subscriber=_name(patient, "patient"),
        member_id=_member_id(coverage, medicare=filing == "MB"),
        subscriber_address=_address(patient, "patient", zip9=False),
        birth_date=str(patient["birthDate"]).replace("-", ""), gender=gender,
        payer_name=str(x12.get("payerName") or payer.get("name") or "PAYER"),
        payer_id=receiver_id, patient_control_number=str(pcn),
        total=sum((ln.charge for ln in lines), Decimal("0")),
        place_of_service=pos[1], frequency=frequency, prior_payer_claim_number=prior_icn,
        diagnoses=dx, lines=lines, rendering=rendering, rendering_npi=rendering_npi,
        reference=claim["id"].replace("-", "")[:30],
    )


def _own_icn(ctx: Context, claim_id: str) -> str | None:
    result = ctx.search_engine.search(ctx.store, "ClaimResponse",
                                      [("request", f"Claim/{claim_id}")])
    bodies = ctx.store.load_bodies(result.pks)
    for pk in result.pks:
        body = bodies[pk].body
        if body is None:
            continue
        for ident in json_numbers.loads(body).get("identifier", []):
            if ident.get("system") == PAYER_ICN_SYSTEM:
                return str(ident["value"])
    return None


@operation("OperationDefinition-Claim-export-837p", affects_state=False,
           needs=("Claim.r", "ClaimResponse.r", "Patient.r", "Coverage.r", "Organization.r",
                  "Practitioner.r"))
def export_837p(call: OperationCall) -> FhirResponse:
    """The Claim as an X12 837P interchange."""
    assert call.res_type and call.res_id
    stored = call.ctx.store.read(call.res_type, call.res_id)
    if stored is None:
        raise not_found(call.res_type, call.res_id)
    if stored.deleted or stored.body is None:
        raise gone(stored)
    content = build(call.ctx, json_numbers.loads(stored.body))
    control = next_control_number(call.ctx.store, content.submitter_id)
    text = write_837p(content, control, datetime.now(UTC), call.ctx.config.x12_usage)
    name = f"claim-{call.res_id}-{control:09d}.x12"
    return FhirResponse(200, raw=text.encode("ascii", "replace"), headers={
        "Content-Type": EDI_X12, "Content-Disposition": f'attachment; filename="{name}"'})
