"""The telehealth billing rules, as functions of the facts and the payer's tables.

Every code, amount, threshold and denial reason comes from the rules and fee tables
(operations/billing/tables.py); this module only says how they apply:

- place of service: POS `home` (Location type in `homeLocationTypes`, v3-RoleCode PTRES) at the
  non-facility rate, else POS `elsewhere` at the facility rate (CMS POS code set);
- modifiers: the modality's (95 audio-video, 93 audio-only, FQ instead for RHC/FQHC billing),
  G0 for acute stroke, at most `maxModifiers` (Medicare Benefit Policy Manual ch. 15 §270);
- E/M level by total time on the date of service and new vs established (CPT 2026);
- the originating site's facility claim (Q3014), never for a patient at home
  (Medicare Claims Processing Manual ch. 12 §190);
- what the payer does not cover is a Denial with its CARC, not an error."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from operations.billing import codes
from operations.billing.gather import location_types
from operations.billing.model import (
    CPT,
    HCPCS,
    MODALITIES,
    ClaimPlan,
    Denial,
    Line,
    Plan,
    VisitFacts,
    unprocessable,
)
from operations.billing.tables import FeeTable, RuleTable, Tables

CENT = Decimal("0.01")


def _coding_in(codings: list[tuple[str | None, str | None]], wanted: list[dict[str, Any]]) -> bool:
    return any((w.get("system"), w.get("code")) in codings for w in wanted)


def place_of(facts: VisitFacts, rules: RuleTable) -> tuple[str, dict[str, Any]]:
    """("home" | "elsewhere", the table's POS entry for it)."""
    pos = rules.get("placeOfService")
    if facts.location is None and pos.get("unknownLocation", "elsewhere") == "refuse":
        raise unprocessable(f"Where the patient was during {facts.encounter_ref or 'the visit'} "
                            "is not recorded (Encounter.location): the place of service, home "
                            f"(POS {pos['home']['code']}) or elsewhere (POS "
                            f"{pos['elsewhere']['code']}), cannot be decided",
                            "Encounter.location")
    at_home = _coding_in(location_types(facts.location), pos.get("homeLocationTypes", []))
    place = "home" if at_home else "elsewhere"
    return place, pos[place]


def modality_of(facts: VisitFacts, tables: Tables) -> str:
    """The `modality` input, else the virtualService channel type, else the default for a
    virtual Encounter (channels table)."""
    if facts.modality:
        if facts.modality not in MODALITIES:
            raise unprocessable(f"modality must be one of {', '.join(MODALITIES)}, not "
                                f"'{facts.modality}'", "modality")
        return facts.modality
    if facts.channel is not None:
        found = tables.modality_of_channel(*facts.channel)
        if found:
            return found
    if facts.virtual:
        return str(tables.channels.get("defaultForVirtualEncounter", "audio-video"))
    raise unprocessable(f"{facts.encounter_ref} is not a telehealth visit (no class VR, no "
                        "virtualService); give `modality` to bill it as one", "modality")


def select_em(rules: RuleTable, minutes: int | None, established: bool) -> str:
    """The office E/M code for a total time, by the table's thresholds (met or exceeded)."""
    em = rules.get("evaluationAndManagement")
    kind = "established" if established else "new"
    steps = sorted(em[kind], key=lambda s: s["minMinutes"])
    if minutes is None:
        raise unprocessable("The visit's total time is unknown (Encounter.length, or "
                            "period.start and period.end): give `procedure` or the time",
                            "Encounter.length")
    chosen = None
    for step in steps:
        if minutes >= step["minMinutes"]:
            chosen = step["code"]
    if chosen is None:
        raise unprocessable(f"{minutes} minutes is below the {steps[0]['minMinutes']} minutes of "
                            f"the lowest {kind}-patient E/M level ({steps[0]['code']}); give "
                            "`procedure`", "Encounter.length")
    return str(chosen)


def price(fees: FeeTable, code: str, rate: str) -> Decimal | None:
    """The allowed amount of one unit: a fixed amount, or RVUs x GPCI x conversion factor at the
    facility or non-facility rate (CY 2026 PFS final rule); None when the table cannot say."""
    fixed = fees.decimal("fixed", code, "amount")
    if fixed is not None:
        return fixed.quantize(CENT, ROUND_HALF_UP)
    rvu = (fees.data.get("rvu") or {}).get(code)
    cf = fees.decimal("conversionFactor", "value")
    if not rvu or cf is None:
        return None
    pe_key = "peFacility" if rate == "facility" else "peNonFacility"
    parts = [rvu.get("work"), rvu.get(pe_key), rvu.get("mp")]
    if any(p is None for p in parts):
        return None
    gpci = fees.data.get("gpci") or {}
    total = (Decimal(str(parts[0])) * Decimal(str(gpci.get("work", 1)))
             + Decimal(str(parts[1])) * Decimal(str(gpci.get("pe", 1)))
             + Decimal(str(parts[2])) * Decimal(str(gpci.get("mp", 1))))
    return (total * cf).quantize(CENT, ROUND_HALF_UP)


def denial_of(rules: RuleTable, key: str) -> Denial:
    d = rules.get("denials")[key]
    return Denial(key, str(d["carc"]), str(d["text"]))


def _covers(spec: Any, categories: set[str]) -> bool:
    return spec in (None, "all") or bool(set(spec) & categories)


def _state(facts: VisitFacts) -> str | None:
    for res in (facts.location, facts.patient):
        addr = (res or {}).get("address")
        addrs = addr if isinstance(addr, list) else [addr] if addr else []
        for a in addrs:
            if a.get("state"):
                return str(a["state"]).upper()
    return None


def _service(facts: VisitFacts, rules: RuleTable) -> tuple[str, str]:
    """(system, code) of the service: the `procedure` input or the E/M level by time."""
    if facts.procedure is not None:
        system, code = facts.procedure
        if system not in (CPT, HCPCS) or not code or not codes.valid_procedure(code):
            raise unprocessable(f"`procedure` must be a CPT ({CPT}) or HCPCS ({HCPCS}) code, "
                                f"not {system}|{code}", "procedure")
        return system, code
    em = rules.get("evaluationAndManagement")
    return str(em.get("system", CPT)), select_em(rules, facts.minutes, facts.established)


def categories_of(facts: VisitFacts, rules: RuleTable, service: dict[str, Any]) -> set[str]:
    """The service's categories: its table category, mental-health by principal diagnosis,
    stroke by any diagnosis."""
    cats = {service["category"]} if service.get("category") else set()
    dx = [codes.icd_for_x12(d) for d in facts.diagnoses]
    mh = rules.get("mentalHealth") or {}
    if dx and any(dx[0].startswith(p) for p in mh.get("diagnosisPrefixes", [])):
        cats.add("mental-health")
    stroke = rules.get("stroke") or {}
    if any(d.startswith(p) for d in dx for p in stroke.get("diagnosisPrefixes", [])):
        cats.add("stroke")
    return cats


def _is_rhc_fqhc(facts: VisitFacts, rules: RuleTable) -> bool:
    spec = rules.get("rhcFqhc") or {}
    return _coding_in(facts.billing_org_types, spec.get("organizationTypes", []))


def coverage_denial(facts: VisitFacts, rules: RuleTable, service: dict[str, Any] | None,
                     cats: set[str], place: str, modality: str) -> Denial | None:
    """Why the payer would not pay this service, or None (first rule that applies)."""
    if service is None or not service.get("covered"):
        return denial_of(rules, (service or {}).get("denial") or rules.get("uncoveredDenial"))
    home = rules.get("home") or {}
    if place == "home" and not _covers(home.get("coveredFor"), cats):
        return denial_of(rules, home["denial"])
    mod = rules.get("modalities")[modality]
    if not _covers(mod.get("coveredFor"), cats):
        return denial_of(rules, mod["denial"])
    states = mod.get("coveredStates")
    if states is not None and _state(facts) not in states:
        return denial_of(rules, mod["denial"])
    geo = rules.get("geographic")
    if geo and not (set(geo.get("exempt", [])) & cats) and place != "home" and \
            not _coding_in(location_types(facts.location), geo.get("ruralLocationTypes", [])):
        return denial_of(rules, geo["denial"])
    rhc = rules.get("rhcFqhc") or {}
    if _is_rhc_fqhc(facts, rules) and not _covers(rhc.get("distantSiteCoveredFor"), cats):
        return denial_of(rules, rhc["denial"])
    return None


def _modifiers(facts: VisitFacts, rules: RuleTable, service: dict[str, Any] | None,
               cats: set[str], modality: str) -> list[tuple[str, str]]:
    if service is not None and service.get("telehealthModifiers") is False:
        return []
    mod = rules.get("modalities")[modality]
    chosen = mod.get("modifier")
    if _is_rhc_fqhc(facts, rules) and mod.get("rhcFqhcModifier"):
        chosen = mod["rhcFqhcModifier"]
    out = [(chosen["system"], chosen["code"])] if chosen else []
    stroke = rules.get("stroke") or {}
    if "stroke" in cats and stroke.get("modifier"):
        out.append((stroke["modifier"]["system"], stroke["modifier"]["code"]))
    limit = int(rules.get("maxModifiers", codes.MAX_MODIFIERS))
    if len(out) > min(limit, codes.MAX_MODIFIERS):
        raise unprocessable(f"The service needs {len(out)} modifiers; at most {limit} fit",
                            "procedure")
    return out


def _site(facts: VisitFacts, rules: RuleTable, cats: set[str]) -> dict[str, Any] | None:
    """The table's entry for the eligible originating site the patient sat at, or None."""
    spec = rules.get("originatingSite") or {}
    types = location_types(facts.location)
    for site in spec.get("sites", []):
        if _coding_in(types, site.get("locationTypes", [])):
            only = site.get("onlyFor")
            return site if only is None or set(only) & cats else None
    return None


def plan(facts: VisitFacts, rules: RuleTable, fees: FeeTable, tables: Tables) -> Plan:
    """The claims a finished visit makes: the distant-site professional claim, and the
    originating site's facility claim when the patient sat at an eligible site."""
    place, pos = place_of(facts, rules)
    modality = modality_of(facts, tables)
    mod_spec = rules.get("modalities").get(modality)
    if mod_spec is None:
        raise unprocessable(f"Payer '{rules.payer}' has no rules for {modality} telehealth",
                            "modality")
    if place not in mod_spec.get("allowedAt", ["home", "elsewhere"]):
        at = facts.location_ref or "no Location"
        allowed = " or ".join(mod_spec["allowedAt"])
        modifier = (mod_spec.get("modifier") or {}).get("code")
        raise unprocessable(
            f"{modality} telehealth (modifier {modifier}) is allowed only for a patient at "
            f"{allowed}; the patient was {'at ' + at if facts.location_ref else 'not at home'} "
            f"on {facts.dos.isoformat()}", "modality")
    system, code = _service(facts, rules)
    service = (rules.get("services") or {}).get(code)
    cats = categories_of(facts, rules, service or {})
    denial = coverage_denial(facts, rules, service, cats, place, modality)
    amount = price(fees, code, pos["rate"])
    if amount is None:
        if denial is None:
            raise unprocessable(
                f"The fee table {fees.path} has no {pos['rate']} amount for {code} in "
                f"{fees.year}: load the values (python -m operations.billing.import_rvus)",
                "procedure")
        amount = Decimal("0.00")
    line = Line(system, code, _modifiers(facts, rules, service, cats, modality), pos["code"],
                amount, category=(service or {}).get("category"), denial=denial)
    professional = ClaimPlan("distant-site", "professional", facts.billing, facts.rendering,
                             [line], pos["code"])
    claims = [professional]
    site = _site(facts, rules, cats) if place == "elsewhere" else None
    if site is not None:
        claims.append(_facility_claim(facts, rules, fees, site, denial))
    return Plan(claims, place, modality, rules.path, fees.path)


def _facility_claim(facts: VisitFacts, rules: RuleTable, fees: FeeTable, site: dict[str, Any],
                    denial: Denial | None) -> ClaimPlan:
    spec = rules.get("originatingSite")
    org = facts.site_org
    if org is None:
        raise unprocessable(f"The originating site {facts.location_ref} has no "
                            "managingOrganization to bill the facility fee", "Encounter.location")
    if not org.npi or not codes.valid_npi(org.npi):
        raise unprocessable(f"The originating site's organization {org.ref} has no valid NPI",
                            "Encounter.location")
    svc = spec["service"]
    amount = price(fees, svc["code"], "facility")
    if amount is None:
        raise unprocessable(f"The fee table {fees.path} has no amount for {svc['code']}",
                            "Encounter.location")
    pos = site.get("placeOfService")
    line = Line(svc["system"], svc["code"], [], pos, amount, category="originating-site",
                revenue_code=site.get("revenueCode"), denial=denial)
    return ClaimPlan("originating-site", site["claimType"], org, None, [line], pos,
                     type_of_bill=site.get("typeOfBill"))
