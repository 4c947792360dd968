"""Coverage eligibility from the same payer tables as claims: is the service covered for this
patient on this date, at this place and modality, and what does the patient pay
(https://hl7.org/fhir/R4/coverageeligibilityrequest.html,
https://hl7.org/fhir/R4/coverageeligibilityresponse.html).

Two ways in, one answer: `POST [base]/CoverageEligibilityRequest/$submit` (the official R4
OperationDefinition CoverageEligibilityRequest-submit; a request, or a Bundle of them) answers
with the CoverageEligibilityResponse (a Bundle of them for a Bundle); a plain create of an
active CoverageEligibilityRequest makes the same response in the same transaction (an
`after_create` hook), found with
`CoverageEligibilityResponse?request=CoverageEligibilityRequest/ID`.

Each item is priced and judged like a claim line: place of service from `facility` (or
item.facility), modality from the item's telehealth modifier (93 audio-only, 95 audio-video,
GQ store-and-forward), diagnoses from item.diagnosis. A service the payer does not cover is
`excluded` with the CARC text; a request that cannot be judged (no Coverage in force, no table)
is outcome `error` with the reason."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.store.base import StoredResource, StoreTx
from fhir_server.timeutil import now_us, to_instant
from fhir_server.writes import check_resource, store_resource
from operations.billing import adjudicate as adj
from operations.billing.claims import money
from operations.billing.gather import npi_of, read, ref_key, search
from operations.billing.model import ICD10CM, Party, VisitFacts
from operations.billing.rules import categories_of, coverage_denial, denial_of, place_of, price
from operations.billing.tables import FeeTable, RuleTable, Tables, load_tables
from operations.parameters import Params
from operations.registry import CANONICAL_BASE, OperationCall, operation
from resources import json_numbers

BENEFIT_TYPE = "http://terminology.hl7.org/CodeSystem/benefit-type"
ESTIMATE_TYPE = f"{CANONICAL_BASE}/CodeSystem/benefit-estimate"
ERROR_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/eligibility-error"


class _NotJudged(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _serviced(request: dict[str, Any]) -> date:
    value = request.get("servicedDate") or (request.get("servicedPeriod") or {}).get("start") \
        or request.get("created") or to_instant(now_us())
    return date.fromisoformat(str(value)[:10])


def _coverage(ctx: Context, tx: StoreTx, request: dict[str, Any], patient_ref: str,
              day: date) -> tuple[str, dict[str, Any]]:
    wanted = [ref_key(i.get("coverage")) for i in request.get("insurance", [])]
    candidates: list[dict[str, Any]] = []
    if any(wanted):
        candidates = [c for c in (read(tx, k) for k in wanted if k) if c is not None]
    else:
        candidates = search(ctx, tx, "Coverage", [("beneficiary", patient_ref),
                                                  ("status", "active")])
    iso = day.isoformat()
    for c in sorted(candidates, key=lambda c: c.get("order", 1_000_000)):
        period = c.get("period") or {}
        if c.get("status") == "active" and ref_key(c.get("beneficiary")) == patient_ref and \
                (not period.get("start") or period["start"][:10] <= iso) and \
                (not period.get("end") or iso <= period["end"][:10]):
            return f"Coverage/{c['id']}", c
    raise _NotJudged("no-coverage", f"{patient_ref} has no active Coverage in force on {iso}")


def _modality_of(rules: RuleTable, modifiers: list[tuple[str | None, str | None]]) -> str:
    codes_given = {c for _, c in modifiers}
    for name, spec in rules.get("modalities").items():
        mods = [spec.get("modifier"), spec.get("rhcFqhcModifier")]
        if any(m and m.get("code") in codes_given for m in mods):
            return str(name)
    return "audio-video"


def _item(ctx: Context, tx: StoreTx, rules: RuleTable, fees: FeeTable, request: dict[str, Any],
          item: dict[str, Any], base: VisitFacts, share: adj.CostSharing) -> dict[str, Any]:
    coding = ((item.get("productOrService") or {}).get("coding") or [{}])[0]
    code = str(coding.get("code", ""))
    modifiers = [(c.get("system"), c.get("code")) for m in item.get("modifier", [])
                 for c in m.get("coding", [])]
    loc_key = ref_key(item.get("facility")) or ref_key(request.get("facility"))
    location = read(tx, loc_key) if loc_key else None
    dx = []
    for d in item.get("diagnosis", []):
        for c in (d.get("diagnosisCodeableConcept") or {}).get("coding", []):
            if c.get("system") == ICD10CM and c.get("code"):
                dx.append(str(c["code"]))
    facts = VisitFacts(**{**base.__dict__, "location": location, "location_ref": loc_key,
                          "diagnoses": dx})
    place, pos = place_of(facts, rules)
    modality = _modality_of(rules, modifiers)
    site_code = (rules.get("originatingSite") or {}).get("service", {}).get("code")
    service = (rules.get("services") or {}).get(code)
    out: dict[str, Any] = {"productOrService": item["productOrService"]}
    if item.get("modifier"):
        out["modifier"] = item["modifier"]
    if code == site_code:
        denial = None if place != "home" else denial_of(rules, "siteNotEligible")
        amount = price(fees, code, "facility")
    else:
        cats = categories_of(facts, rules, service or {})
        allowed_at = rules.get("modalities")[modality].get("allowedAt", [])
        denial = coverage_denial(facts, rules, service, cats, place, modality)
        if denial is None and place not in allowed_at:
            denial = denial_of(rules, "notCovered")
        amount = price(fees, code, pos["rate"])
    if denial is not None:
        out["excluded"] = True
        out["description"] = f"Not covered: CARC {denial.carc} {denial.text}"
        return out
    out["excluded"] = False
    benefits: list[dict[str, Any]] = []
    if amount is not None:
        benefits.append({"type": {"coding": [{"system": BENEFIT_TYPE, "code": "benefit"}]},
                         "allowedMoney": money(amount, fees.currency)})
    benefits.append({"type": {"coding": [{"system": BENEFIT_TYPE, "code": "deductible"}]},
                     "allowedMoney": money(share.deductible, fees.currency),
                     "usedMoney": money(share.met, fees.currency)})
    if share.copay is not None:
        benefits.append({"type": {"coding": [{"system": BENEFIT_TYPE, "code": "copay"}]},
                         "allowedMoney": money(share.copay, fees.currency)})
    else:
        benefits.append({"type": {"coding": [{"system": BENEFIT_TYPE, "code": "copay-percent"}]},
                         "allowedUnsignedInt": int(share.coinsurance_pct)})
    if amount is not None:
        deductible = min(share.remaining, amount)
        after = amount - deductible
        rest = min(share.copay, after) if share.copay is not None else \
            (after * share.coinsurance_pct / 100).quantize(adj.CENT)
        benefits.append({"type": {"coding": [{"system": ESTIMATE_TYPE, "code": "patient",
                                              "display": "Estimated patient responsibility"}]},
                         "allowedMoney": money(deductible + rest, fees.currency)})
    out["benefit"] = benefits
    out["authorizationRequired"] = False
    return out


def respond(ctx: Context, tx: StoreTx, request: dict[str, Any], tables: Tables) -> dict[str, Any]:
    """The CoverageEligibilityResponse to a stored request (not yet stored)."""
    created = to_instant(now_us())
    response: dict[str, Any] = {
        "resourceType": "CoverageEligibilityResponse", "id": str(uuid.uuid4()),
        "status": "active", "purpose": request.get("purpose") or ["benefits"],
        "patient": request["patient"],
    }
    if request.get("servicedDate"):
        response["servicedDate"] = request["servicedDate"]
    response["created"] = created
    if request.get("provider"):
        response["requestor"] = request["provider"]
    response["request"] = {"reference": f"CoverageEligibilityRequest/{request['id']}"}
    response["insurer"] = request.get("insurer") or {"display": "unknown"}
    try:
        patient_ref = ref_key(request.get("patient"))
        patient = read(tx, patient_ref)
        if not patient_ref or patient is None:
            raise _NotJudged("no-patient", f"The patient {patient_ref} is not known")
        day = _serviced(request)
        cov_ref, coverage = _coverage(ctx, tx, request, patient_ref, day)
        payer_ref = next((k for k in (ref_key(p) for p in coverage.get("payor", [])) if k),
                         ref_key(request.get("insurer")))
        payer = read(tx, payer_ref) if payer_ref else None
        _, rules = tables.rules_for(coverage, payer, day)
        fees = tables.fees_for(rules.payer, day) if rules else None
        if rules is None or fees is None:
            raise _NotJudged("no-table", f"No payer table covers {cov_ref} on {day.isoformat()}")
        met = Decimal("0.00")
        for resp in search(ctx, tx, "ClaimResponse", [("patient", patient_ref),
                                                      ("status", "active")]):
            if cov_ref in {ref_key(i.get("coverage")) for i in resp.get("insurance", [])}:
                claim = read(tx, ref_key(resp.get("request")))
                start = ((claim or {}).get("billablePeriod") or {}).get("start", "")
                if start[:4] == str(day.year):
                    met += adj.deductible_applied(resp)
        share = adj.cost_sharing(fees, coverage, met, professional=True)
        provider_key = ref_key(request.get("provider"))
        provider_body = read(tx, provider_key) if provider_key else None
        provider = Party(provider_key or "Organization/unknown", provider_body or {},
                         npi_of(provider_body))
        org_types = [(c.get("system"), c.get("code"))
                     for t in (provider_body or {}).get("type", []) for c in t.get("coding", [])]
        base = VisitFacts(
            encounter={}, encounter_ref="", patient=patient, patient_ref=patient_ref, dos=day,
            minutes=None, coverage=coverage, coverage_ref=cov_ref, payer=payer,
            payer_ref=payer_ref, billing=provider, rendering=None, location=None,
            location_ref=None, site_org=None, diagnoses=[], procedure=None, modality=None,
            channel=None, virtual=True, established=True, billing_org_types=org_types)
        insurance: dict[str, Any] = {"coverage": {"reference": cov_ref}, "inforce": True,
                                     "benefitPeriod": {"start": f"{day.year}-01-01",
                                                       "end": f"{day.year}-12-31"}}
        items = [_item(ctx, tx, rules, fees, request, it, base, share)
                 for it in request.get("item", [])]
        if items:
            insurance["item"] = items
        response["outcome"] = "complete"
        excluded = sum(1 for i in items if i.get("excluded"))
        response["disposition"] = (f"{len(items) - excluded} of {len(items)} services covered"
                                   if items else "Coverage in force")
        response["insurance"] = [insurance]
    except _NotJudged as why:
        response["outcome"] = "error"
        response["disposition"] = why.text
        response["error"] = [{"code": {"coding": [{"system": ERROR_SYSTEM, "code": why.code}],
                                       "text": why.text}}]
    return response


def _after_create(ctx: Context, tx: StoreTx, stored: StoredResource) -> None:
    """Answer every new active CoverageEligibilityRequest in the same transaction."""
    if stored.res_type != "CoverageEligibilityRequest" or stored.body is None:
        return
    request = json_numbers.loads(stored.body)
    if request.get("status") != "active":
        return
    response = respond(ctx, tx, request, load_tables(tuple(ctx.config.billing_tables)))
    check_resource(response, "CoverageEligibilityResponse")
    store_resource(ctx, tx, response, response["id"], None, "POST")


def install(ctx: Context) -> None:
    """Plugin entry point: the create hook for CoverageEligibilityRequest. The payer tables are
    read (and checked) here, so that a bad table stops the server at start, naming the file."""
    load_tables(tuple(ctx.config.billing_tables))
    ctx.hooks.register("after_create", _after_create)


def _submit_one(ctx: Context, tx: StoreTx, request: dict[str, Any]) -> dict[str, Any]:
    if request.get("status") != "active":
        raise FhirError.of(422, "business-rule", "A CoverageEligibilityRequest is submitted "
                           f"with status active, not '{request.get('status')}'",
                           "CoverageEligibilityRequest.status")
    request = {k: v for k, v in request.items() if k not in ("id", "meta")}
    check_resource(request, "CoverageEligibilityRequest")
    req_id = str(uuid.uuid4())
    store_resource(ctx, tx, request, req_id, None, "POST")
    found = search(ctx, tx, "CoverageEligibilityResponse",
                   [("request", f"CoverageEligibilityRequest/{req_id}")])
    if not found:
        raise FhirError.of(500, "exception", "No CoverageEligibilityResponse was made")
    return found[0]


@operation("OperationDefinition-CoverageEligibilityRequest-submit", affects_state=True,
           needs=("CoverageEligibilityRequest.c", "CoverageEligibilityResponse.c",
                  "Coverage.r", "Patient.r"))
def submit(call: OperationCall) -> Params:
    """Store the request(s) and answer with the CoverageEligibilityResponse(s)."""
    resource = call.params.get("resource")
    assert isinstance(resource, dict)
    with call.ctx.writing() as tx:
        if resource.get("resourceType") == "Bundle":
            requests = [e.get("resource") for e in resource.get("entry", [])
                        if (e.get("resource") or {}).get("resourceType")
                        == "CoverageEligibilityRequest"]
            if not requests:
                raise FhirError.of(400, "invalid", "The Bundle holds no "
                                   "CoverageEligibilityRequest", "resource")
            bundle = {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": _submit_one(call.ctx, tx, r)} for r in requests]}
            return Params().add("return", bundle)
        if resource.get("resourceType") != "CoverageEligibilityRequest":
            raise FhirError.of(400, "invalid", "$submit takes a CoverageEligibilityRequest or a "
                               f"Bundle of them, not a {resource.get('resourceType')}",
                               "resource")
        return Params().add("return", _submit_one(call.ctx, tx, resource))
