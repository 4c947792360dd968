"""The rules engine's ClaimResponse: outcome, per-line adjudication (submitted, eligible,
deductible, copay/coinsurance, benefit), CARC denial reasons and what the patient owes
(https://hl7.org/fhir/R4/claimresponse.html; categories from
http://terminology.hl7.org/CodeSystem/adjudication and the CARIN Blue Button
C4BBAdjudication and C4BBAdjudicationDiscriminator code systems).

Patient responsibility: the payer table's annual deductible and coinsurance (Medicare Part B:
80 percent after the deductible, SSA §1833), overridden by the Coverage's costToBeneficiary
(`deductible`, `copaypct`, and a fixed `televisit`/`copay` in place of coinsurance on the
professional claim; https://hl7.org/fhir/R4/valueset-coverage-copay-type.html). The deductible
already met is what the patient's other active ClaimResponses of that Coverage applied in the
same calendar year."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from operations.billing.claims import CLAIM_TYPE, PAYER_ICN_SYSTEM, money
from operations.billing.model import ClaimPlan
from operations.billing.tables import FeeTable

ADJ = "http://terminology.hl7.org/CodeSystem/adjudication"
C4BB_ADJ = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
C4BB_DISC = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
COPAY_TYPE = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


@dataclass
class CostSharing:
    """The patient's share terms for one claim."""

    deductible: Decimal  # annual
    met: Decimal  # already applied this year
    coinsurance_pct: Decimal
    copay: Decimal | None  # fixed per professional visit, instead of coinsurance

    @property
    def remaining(self) -> Decimal:
        return max(ZERO, self.deductible - self.met)


def cost_sharing(fees: FeeTable, coverage: dict[str, Any], met: Decimal,
                 professional: bool) -> CostSharing:
    deductible = fees.decimal("deductible", "amount") or ZERO
    pct = fees.decimal("coinsurancePercent", "value") or ZERO
    copay = None
    for c in coverage.get("costToBeneficiary", []):
        codes = {(x.get("system"), x.get("code")) for x in (c.get("type") or {}).get("coding", [])}
        money_value = (c.get("valueMoney") or {}).get("value")
        qty = (c.get("valueQuantity") or {}).get("value")
        if (COPAY_TYPE, "deductible") in codes and money_value is not None:
            deductible = Decimal(str(money_value))
        elif (COPAY_TYPE, "copaypct") in codes and qty is not None:
            pct = Decimal(str(qty))
        elif professional and codes & {(COPAY_TYPE, "televisit"), (COPAY_TYPE, "copay")} \
                and money_value is not None:
            copay = Decimal(str(money_value))
    return CostSharing(deductible, met, pct, copay)


def payer_icn(claim_id: str) -> str:
    """A payer claim control number for the ClaimResponse (13 digits, stable per Claim)."""
    return str(int(hashlib.sha256(claim_id.encode()).hexdigest(), 16) % 10**13).zfill(13)


def _adj(system: str, code: str, amount: Decimal | None, currency: str,
         reason: tuple[str, str] | None = None, value: Decimal | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"category": {"coding": [{"system": system, "code": code}]}}
    if reason:
        out["reason"] = {"coding": [{"system": CARC, "code": reason[0], "display": reason[1]}]}
    if amount is not None:
        out["amount"] = money(amount, currency)
    if value is not None:
        out["value"] = float(value)
    return out


@dataclass
class Adjudicated:
    response: dict[str, Any]
    deductible_applied: Decimal


def adjudicate(claim: dict[str, Any], plan: ClaimPlan, share: CostSharing, currency: str,
               response_id: str, created: str) -> Adjudicated:
    """The ClaimResponse for one stored Claim."""
    items = []
    totals = {k: ZERO for k in ("submitted", "eligible", "deductible", "coins", "copay",
                                "benefit", "noncovered")}
    remaining = share.remaining
    denied_all = True
    for n, line in enumerate(plan.lines, start=1):
        submitted = line.amount
        totals["submitted"] += submitted
        adjs = [_adj(ADJ, "submitted", submitted, currency)]
        if line.denial is not None:
            adjs += [
                _adj(C4BB_DISC, "denialreason", None, currency,
                     (line.denial.carc, line.denial.text)),
                _adj(ADJ, "eligible", ZERO, currency),
                _adj(C4BB_ADJ, "noncovered", submitted, currency,
                     (line.denial.carc, line.denial.text)),
                _adj(ADJ, "benefit", ZERO, currency),
            ]
            totals["noncovered"] += submitted
            items.append({"itemSequence": n, "adjudication": adjs})
            continue
        denied_all = False
        eligible = submitted
        deductible = min(remaining, eligible)
        remaining -= deductible
        after = eligible - deductible
        if share.copay is not None:
            copay = min(share.copay, after)
            coins = ZERO
        else:
            copay = ZERO
            coins = (after * share.coinsurance_pct / 100).quantize(CENT, ROUND_HALF_UP)
        benefit = after - copay - coins
        adjs += [_adj(ADJ, "eligible", eligible, currency),
                 _adj(ADJ, "deductible", deductible, currency)]
        if share.copay is not None:
            adjs.append(_adj(ADJ, "copay", copay, currency))
        else:
            adjs += [_adj(ADJ, "eligpercent", None, currency,
                          value=Decimal(100) - share.coinsurance_pct),
                     _adj(C4BB_ADJ, "coinsurance", coins, currency)]
        adjs += [_adj(C4BB_ADJ, "memberliability", deductible + copay + coins, currency),
                 _adj(ADJ, "benefit", benefit, currency)]
        for key, amount in (("eligible", eligible), ("deductible", deductible), ("coins", coins),
                            ("copay", copay), ("benefit", benefit)):
            totals[key] += amount
        items.append({"itemSequence": n, "adjudication": adjs})
    patient_owes = totals["deductible"] + totals["coins"] + totals["copay"]
    denials = [line.denial for line in plan.lines if line.denial is not None]
    if denied_all:
        disposition = "Denied: " + "; ".join(f"CARC {d.carc} {d.text}" for d in denials)
    elif denials:
        disposition = "Partly denied: " + "; ".join(f"CARC {d.carc} {d.text}" for d in denials)
    else:
        disposition = "Processed: patient responsibility " + \
            f"{patient_owes:.2f} {currency}, payment {totals['benefit']:.2f} {currency}"
    total = [_adj(ADJ, "submitted", totals["submitted"], currency),
             _adj(ADJ, "eligible", totals["eligible"], currency),
             _adj(ADJ, "deductible", totals["deductible"], currency)]
    if totals["copay"]:
        total.append(_adj(ADJ, "copay", totals["copay"], currency))
    total += [_adj(C4BB_ADJ, "coinsurance", totals["coins"], currency),
              _adj(C4BB_ADJ, "noncovered", totals["noncovered"], currency),
              _adj(C4BB_ADJ, "memberliability", patient_owes, currency),
              _adj(ADJ, "benefit", totals["benefit"], currency)]
    claim_type = (claim.get("type") or {}).get("coding", [{}])[0].get("code", "professional")
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": response_id,
        "identifier": [{"system": PAYER_ICN_SYSTEM, "value": payer_icn(claim["id"])}],
        "status": "active",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": claim_type}]},
        "use": "claim",
        "patient": claim["patient"],
        "created": created,
        "insurer": claim.get("insurer") or {"display": "payer"},
        "requestor": {"reference": claim["provider"]["reference"]},
        "request": {"reference": f"Claim/{claim['id']}"},
        "outcome": "complete",
        "disposition": disposition,
        "item": items,
        "total": total,
        "payment": {"type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
                    "amount": money(totals["benefit"], currency)},
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": claim["insurance"][0]["coverage"]}],
    }
    return Adjudicated(response, totals["deductible"])


def deductible_applied(response: dict[str, Any]) -> Decimal:
    """The deductible a stored ClaimResponse applied (its total)."""
    for t in response.get("total", []):
        codes = [(c.get("system"), c.get("code")) for c in t["category"].get("coding", [])]
        if (ADJ, "deductible") in codes:
            return Decimal(str(t["amount"]["value"]))
    return ZERO
