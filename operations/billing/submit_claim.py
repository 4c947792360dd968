"""`POST [base]/Encounter/[id]/$submit-claim`: a finished telehealth visit becomes R4 Claims
and adjudicated ClaimResponses, stored in one transaction
(OperationDefinition https://telefhir.org/fhir/OperationDefinition/Encounter-submit-claim).

Submissions of one Encounter are serialised on a lock. Each claim role (distant-site,
originating-site) has at most one active Claim per Encounter: an unchanged resubmission returns
it and its ClaimResponse; a changed one cancels both and writes a replacement Claim whose
related.claim (relationship `prior`) points at the old one (837P frequency 7). Every write goes
through `writes.store_resource`, so validation, hooks and the search index apply."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from fhir_server.context import Context
from fhir_server.responses import gone, not_found
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import now_us, to_instant
from fhir_server.writes import check_resource, store_resource
from operations.billing import adjudicate as adj
from operations.billing.claims import (
    build_claim,
    fingerprint,
    fingerprint_of,
    finish_claim,
    role_of,
)
from operations.billing.gather import gather, read, ref_key, search
from operations.billing.model import ClaimPlan, VisitFacts
from operations.billing.rules import plan as make_plan
from operations.billing.tables import load_tables
from operations.parameters import Params
from operations.registry import OperationCall, operation
from resources import json_numbers

ROLES = ("distant-site", "originating-site")


def _active_claims(ctx: Context, tx: StoreTx, enc_ref: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for claim in search(ctx, tx, "Claim", [("encounter", enc_ref), ("status", "active")]):
        role = role_of(claim)
        if role in ROLES:
            out[role] = claim
    return out


def _response_of(ctx: Context, tx: StoreTx, claim_id: str) -> dict[str, Any] | None:
    found = search(ctx, tx, "ClaimResponse", [("request", f"Claim/{claim_id}"),
                                              ("status", "active")])
    return found[0] if found else None


def _write(ctx: Context, tx: StoreTx, resource: dict[str, Any]) -> dict[str, Any]:
    check_resource(resource, resource["resourceType"])
    res_type, res_id = resource["resourceType"], resource["id"]
    current = tx.read(res_type, res_id)
    stored = store_resource(ctx, tx, resource, res_id, current,
                            "PUT" if current is not None else "POST")
    assert stored.body is not None
    body: dict[str, Any] = json_numbers.loads(stored.body)
    return body


def _cancel(ctx: Context, tx: StoreTx, resource: dict[str, Any]) -> None:
    changed = {k: v for k, v in resource.items() if k != "meta"}
    changed["status"] = "cancelled"
    _write(ctx, tx, changed)


def _deductible_met(ctx: Context, tx: StoreTx, facts: VisitFacts) -> Decimal:
    """Deductible the patient's other active ClaimResponses of this Coverage applied in the
    calendar year of the date of service."""
    met = Decimal("0.00")
    for resp in search(ctx, tx, "ClaimResponse", [("patient", facts.patient_ref),
                                                  ("status", "active")]):
        covs = {ref_key(i.get("coverage")) for i in resp.get("insurance", [])}
        if facts.coverage_ref not in covs:
            continue
        claim = read(tx, ref_key(resp.get("request")))
        start = ((claim or {}).get("billablePeriod") or {}).get("start", "")
        if start[:4] == str(facts.dos.year):
            met += adj.deductible_applied(resp)
    return met


def submit(ctx: Context, enc_key: str, params: dict[str, Any],
           base_url: str | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Claim, ClaimResponse) pairs for the Encounter, made or found, in role order."""
    tables = load_tables(tuple(ctx.config.billing_tables))
    with ctx.writing() as tx:
        tx.lock(f"telefhir-billing:{enc_key}")
        res_type, res_id = enc_key.split("/", 1)
        stored = tx.read(res_type, res_id)
        if stored is None:
            raise not_found(res_type, res_id)
        if stored.deleted:
            raise gone(stored)
        facts, rules, fees = gather(ctx, tx, tables, enc_key, params, base_url)
        tx.lock(f"telefhir-billing:{facts.coverage_ref}")  # the deductible is shared
        plan = make_plan(facts, rules, fees, tables)
        drafts: dict[str, tuple[ClaimPlan, dict[str, Any]]] = {
            c.role: (c, build_claim(c, facts, fees.currency)) for c in plan.claims}
        existing = _active_claims(ctx, tx, enc_key)
        kept: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        priors: dict[str, tuple[dict[str, Any], str | None]] = {}
        for role, old in existing.items():
            response = _response_of(ctx, tx, old["id"])
            draft = drafts.get(role)
            if draft is not None and response is not None and \
                    fingerprint_of(old) == fingerprint(draft[1]):
                kept[role] = (old, response)
                continue
            icn = None
            if response is not None:
                icn = next((i.get("value") for i in response.get("identifier", [])), None)
                _cancel(ctx, tx, response)
            _cancel(ctx, tx, old)
            priors[role] = (old, icn)
        created = to_instant(now_us())
        met = _deductible_met(ctx, tx, facts)
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for role in ROLES:
            if role in kept:
                out.append(kept[role])
                continue
            if role not in drafts:
                continue
            claim_plan, content = drafts[role]
            prior, icn = priors.get(role, (None, None))
            claim = finish_claim(content, str(uuid.uuid4()), role, created, prior, icn)
            stored_claim = _write(ctx, tx, claim)
            share = adj.cost_sharing(fees, facts.coverage, met,
                                     professional=claim_plan.claim_type == "professional"
                                     and role == "distant-site")
            result = adj.adjudicate(stored_claim, claim_plan, share, fees.currency,
                                    str(uuid.uuid4()), created)
            met += result.deductible_applied
            out.append((stored_claim, _write(ctx, tx, result.response)))
        return out


@operation("OperationDefinition-Encounter-submit-claim", affects_state=True,
           needs=("Encounter.r", "Patient.r", "Coverage.r", "Condition.r", "Location.r",
                  "Organization.r", "Practitioner.r", "PractitionerRole.r", "Claim.cu",
                  "ClaimResponse.cu"))
def submit_claim(call: OperationCall) -> Params:
    """Make (or find) the visit's Claims and ClaimResponses."""
    assert call.res_type and call.res_id
    p = call.params
    params = {"coverage": p.get("coverage"), "procedure": p.get("procedure"),
              "diagnosis": p.all("diagnosis"), "modality": p.get("modality"),
              "provider": p.get("provider")}
    pairs = submit(call.ctx, f"{call.res_type}/{call.res_id}", params, call.req.base_url)
    out = Params()
    for claim, _ in pairs:
        out.add("claim", claim)
    for _, response in pairs:
        out.add("claimResponse", response)
    return out
