"""Read what a claim is made from: the Encounter and what it references (Patient, Locations,
Organizations, Practitioner/PractitionerRole with an NPI, Coverage with the MBI, Conditions),
through the store interface and the search engine, inside the caller's transaction.

Each thing a claim cannot be made without is a 422 OperationOutcome naming it
(https://hl7.org/fhir/R4/encounter.html, https://hl7.org/fhir/R4/coverage.html)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.context import Context
from fhir_server.store.base import StoreTx
from operations.billing import codes
from operations.billing.model import (
    ACT_CODE,
    ICD10CM,
    NPI_SYSTEM,
    VIRTUAL_SERVICE,
    Party,
    VisitFacts,
    unprocessable,
)
from operations.billing.tables import Tables
from resources import json_numbers

_NOT_SERVICES = {"planned", "cancelled", "entered-in-error"}
_PARTICIPANT_ORDER = ("PPRF", "ATND", "PART", "SPRF", "CON")


def ref_key(ref: Any, base_url: str | None = None) -> str | None:
    """`Type/id` of a Reference (relative, or absolute on this server's base), or None."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref:
        return None
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1:]
    parts = ref.split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        if "_history" in parts:
            i = parts.index("_history")
            parts = parts[:i]
        return f"{parts[-2]}/{parts[-1]}"
    return None


def read(tx: StoreTx, key: str | None) -> dict[str, Any] | None:
    """The current body of `Type/id`, or None when unknown or deleted."""
    if not key or "/" not in key:
        return None
    res_type, res_id = key.split("/", 1)
    stored = tx.read(res_type, res_id)
    if stored is None or stored.deleted or stored.body is None:
        return None
    body: dict[str, Any] = json_numbers.loads(stored.body)
    return body


def search(ctx: Context, tx: StoreTx, res_type: str,
           params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every match of a search (within the transaction), in the engine's order."""
    result = ctx.search_engine.search(tx, res_type, [*params, ("_count", "1000")])
    bodies = tx.load_bodies(result.pks)
    out: list[dict[str, Any]] = []
    for pk in result.pks:
        body = bodies[pk].body if pk in bodies else None
        if body is not None:
            out.append(json_numbers.loads(body))
    return out


def npi_of(resource: dict[str, Any] | None) -> str | None:
    for ident in (resource or {}).get("identifier", []):
        if ident.get("system") == NPI_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _codings(cc: Any) -> list[tuple[str | None, str | None]]:
    items = cc if isinstance(cc, list) else [cc]
    out = []
    for c in items:
        for coding in (c or {}).get("coding", []):
            out.append((coding.get("system"), coding.get("code")))
    return out


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else None


TIMEZONE_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"


def _zone(resource: dict[str, Any] | None) -> ZoneInfo | None:
    for ext in (resource or {}).get("extension", []):
        if ext.get("url") == TIMEZONE_EXT and isinstance(ext.get("valueCode"), str):
            try:
                return ZoneInfo(ext["valueCode"])
            except (ZoneInfoNotFoundError, ValueError):
                return None
    return None


def date_of_service(encounter: dict[str, Any], *others: dict[str, Any] | None) -> date:
    """The date of service: the date of Encounter.period.start in the time zone named by the
    standard `timezone` extension (IANA code) of the Encounter or of `others` (the patient's
    Location, the Patient), else as written with its own offset (a server that stores UTC
    instants needs the extension for visits near midnight)."""
    start = (encounter.get("period") or {}).get("start")
    if not isinstance(start, str) or len(start) < 10:
        raise unprocessable("The Encounter has no period.start: the date of service is unknown",
                            "Encounter.period.start")
    zone = next((z for z in (_zone(r) for r in (encounter, *others)) if z), None)
    instant = _instant(start)
    if zone is not None and instant is not None:
        return instant.astimezone(zone).date()
    return date.fromisoformat(start[:10])


def total_minutes(encounter: dict[str, Any]) -> int | None:
    """Total time of the visit: Encounter.length (min, h or s) else period.end - period.start."""
    length = encounter.get("length") or {}
    if isinstance(length.get("value"), (int, float)):
        unit = length.get("code") or length.get("unit") or "min"
        factor = {"min": 1.0, "h": 60.0, "s": 1 / 60, "minutes": 1.0, "hours": 60.0}.get(unit)
        if factor is not None:
            return int(length["value"] * factor)
    period = encounter.get("period") or {}
    start, end = _instant(period.get("start")), _instant(period.get("end"))
    if start and end and end >= start:
        return int((end - start).total_seconds() // 60)
    return None


def _channel(encounter: dict[str, Any]) -> tuple[bool, tuple[str | None, str | None] | None]:
    """(is virtual, virtualService channel type) from the R5 cross-version extension folded
    into nested extensions, or Encounter.class VR."""
    virtual = (encounter.get("class") or {}).get("code") == "VR" and \
        (encounter.get("class") or {}).get("system") in (None, ACT_CODE)
    channel = None
    for ext in encounter.get("extension", []):
        if ext.get("url") != VIRTUAL_SERVICE:
            continue
        virtual = True
        if isinstance(ext.get("valueCoding"), dict):  # the plain-value form
            channel = (ext["valueCoding"].get("system"), ext["valueCoding"].get("code"))
        for part in ext.get("extension", []):
            if part.get("url") == "channelType" and isinstance(part.get("valueCoding"), dict):
                c = part["valueCoding"]
                channel = (c.get("system"), c.get("code"))
    return virtual, channel


def _participants(encounter: dict[str, Any]) -> list[str]:
    """Practitioner/PractitionerRole references of the Encounter, primary performer first."""
    ranked: list[tuple[int, int, str]] = []
    for i, p in enumerate(encounter.get("participant", [])):
        key = ref_key(p.get("individual"))
        if not key or key.split("/")[0] not in ("Practitioner", "PractitionerRole"):
            continue
        types = [c for _, c in _codings(p.get("type", []))]
        rank = min((_PARTICIPANT_ORDER.index(t) for t in types if t in _PARTICIPANT_ORDER),
                   default=len(_PARTICIPANT_ORDER))
        ranked.append((rank, i, key))
    return [k for _, _, k in sorted(ranked)]


def _party(tx: StoreTx, key: str, what: str, expression: str) -> Party:
    body = read(tx, key)
    if body is None:
        raise unprocessable(f"The {what} {key} is not known", expression)
    return Party(key, body, npi_of(body))


def _providers(tx: StoreTx, given: str | None,
               encounter: dict[str, Any]) -> tuple[Party, Party | None, set[tuple[Any, Any]]]:
    """(billing provider, rendering practitioner, specialties) from `provider` or the
    Encounter's primary performer, else its serviceProvider."""
    people = _participants(encounter)
    key = given or (people[0] if people else ref_key(encounter.get("serviceProvider")))
    where = "provider" if given else "Encounter.participant"
    if key is None:
        raise unprocessable("No billing provider: give `provider` or an Encounter.participant "
                            "(Practitioner/PractitionerRole) or serviceProvider", where)
    if key.split("/")[0] not in ("Practitioner", "PractitionerRole", "Organization"):
        raise unprocessable(f"The provider must be a Practitioner, PractitionerRole or "
                            f"Organization, not {key}", where)
    party = _party(tx, key, "provider", where)
    specialties: set[tuple[Any, Any]] = set()
    rendering: Party | None
    if party.res_type == "Practitioner":
        billing, rendering = party, party
    elif party.res_type == "PractitionerRole":
        role = party.resource
        specialties = set(_codings(role.get("specialty", [])))
        prac_key = ref_key(role.get("practitioner"))
        rendering = _party(tx, prac_key, "practitioner of the PractitionerRole",
                           "PractitionerRole.practitioner") if prac_key else None
        org_key = ref_key(role.get("organization"))
        org = _party(tx, org_key, "organization of the PractitionerRole",
                     "PractitionerRole.organization") if org_key else None
        if org is not None and org.npi:
            billing = org
        elif rendering is not None:
            billing = rendering
        elif party.npi:
            billing = party
        else:
            raise unprocessable(f"{key} names neither a practitioner nor an organization with "
                                f"an NPI ({NPI_SYSTEM})", where)
        if party.npi and billing is not party and rendering is None:
            rendering = party
    else:
        billing = party
        rendering = None
        for other in people:
            p = _party(tx, other, "participant", "Encounter.participant")
            if p.res_type == "PractitionerRole":
                specialties |= set(_codings(p.resource.get("specialty", [])))
                pk = ref_key(p.resource.get("practitioner"))
                p = _party(tx, pk, "practitioner", "PractitionerRole.practitioner") if pk else p
            rendering = p
            break
    for who, label in ((billing, "billing provider"), (rendering, "rendering practitioner")):
        if who is None:
            continue
        if not who.npi:
            raise unprocessable(f"The {label} {who.ref} has no NPI (an identifier with system "
                                f"{NPI_SYSTEM})", where)
        if not codes.valid_npi(who.npi):
            raise unprocessable(f"The {label} {who.ref} has NPI '{who.npi}', which fails the "
                                "NPI check digit", where)
    if rendering is not None and rendering.ref == billing.ref:
        rendering = billing
    return billing, rendering, specialties


def _coverage(ctx: Context, tx: StoreTx, given: str | None, patient_ref: str,
              dos: date) -> tuple[str, dict[str, Any]]:
    """The Coverage to bill: the one given, else the patient's active Coverage in force on the
    date of service with the lowest `order`."""
    def in_force(c: dict[str, Any]) -> bool:
        period = c.get("period") or {}
        start, end = period.get("start"), period.get("end")
        return (not start or start[:10] <= dos.isoformat()) and \
            (not end or dos.isoformat() <= end[:10])

    if given:
        if not given.startswith("Coverage/"):
            raise unprocessable(f"`coverage` must reference a Coverage, not {given}", "coverage")
        body = read(tx, given)
        if body is None:
            raise unprocessable(f"The coverage {given} is not known", "coverage")
        if body.get("status") != "active":
            raise unprocessable(f"{given} is '{body.get('status')}', not active", "coverage")
        if ref_key(body.get("beneficiary")) != patient_ref:
            raise unprocessable(f"{given} does not cover {patient_ref}", "coverage")
        if not in_force(body):
            raise unprocessable(f"{given} is not in force on the date of service "
                                f"{dos.isoformat()}", "coverage")
        return given, body
    found = [c for c in search(ctx, tx, "Coverage", [("beneficiary", patient_ref),
                                                     ("status", "active")]) if in_force(c)]
    if not found:
        raise unprocessable(f"{patient_ref} has no active Coverage in force on the date of "
                            f"service {dos.isoformat()}; give `coverage`", "coverage")
    found.sort(key=lambda c: (c.get("order", 1_000_000), c.get("id", "")))
    return f"Coverage/{found[0]['id']}", found[0]


def _diagnoses(ctx: Context, tx: StoreTx, given: list[dict[str, Any]],
               encounter: dict[str, Any], enc_ref: str) -> list[str]:
    """ICD-10-CM codes: the `diagnosis` input, else Encounter.diagnosis by rank,
    reasonReference, reasonCode and the Conditions of the Encounter, principal first."""
    def icd(cc: Any) -> list[str]:
        return [c for s, c in _codings(cc) if s == ICD10CM and c]

    if given:
        out = [c for cc in given for c in icd(cc)[:1]]
        if len(out) != len(given):
            raise unprocessable("Every `diagnosis` needs an ICD-10-CM coding "
                                f"(system {ICD10CM})", "diagnosis")
    else:
        out = []
        ranked = sorted(encounter.get("diagnosis", []), key=lambda d: d.get("rank", 1_000_000))
        refs = [ref_key(d.get("condition")) for d in ranked]
        refs += [ref_key(r) for r in encounter.get("reasonReference", [])]
        for key in refs:
            body = read(tx, key) if key and key.startswith("Condition/") else None
            if body is not None:
                out.extend(icd(body.get("code"))[:1])
        for cc in encounter.get("reasonCode", []):
            out.extend(icd(cc)[:1])
        for cond in search(ctx, tx, "Condition", [("encounter", enc_ref)]):
            out.extend(icd(cond.get("code"))[:1])
    seen: set[str] = set()
    unique = []
    for code in out:
        norm = code.replace(".", "").upper()
        if norm not in seen:
            seen.add(norm)
            unique.append(code)
    for code in unique:
        if not codes.valid_icd10cm(code):
            raise unprocessable(f"'{code}' is not an ICD-10-CM code", "diagnosis")
    if given and len(unique) > codes.MAX_DIAGNOSES:
        raise unprocessable(f"At most {codes.MAX_DIAGNOSES} diagnoses fit on a professional "
                            f"claim, not {len(unique)}", "diagnosis")
    return unique[:codes.MAX_DIAGNOSES]


def _established(ctx: Context, tx: StoreTx, facts_patient: str, encounter: dict[str, Any],
                 billing: Party, rendering: Party | None, specialties: set[tuple[Any, Any]],
                 dos: date, lookback_years: int) -> bool:
    """Whether the patient had a professional service from the same practitioner, or from one
    of the same specialty in the same group, in the `lookback_years` before the date of service
    (CPT E/M guidelines, new vs established patient)."""
    try:
        since = dos.replace(year=dos.year - lookback_years)
    except ValueError:  # 29 February
        since = dos.replace(year=dos.year - lookback_years, day=28)
    start = (encounter.get("period") or {}).get("start")
    until = start if isinstance(start, str) and len(start) > 10 else dos.isoformat()
    prior = search(ctx, tx, "Encounter", [("subject", facts_patient),
                                          ("date", f"ge{since.isoformat()}"),
                                          ("date", f"lt{until}")])
    mine = {rendering.ref} if rendering else set()
    if billing.res_type == "Practitioner":
        mine.add(billing.ref)
    group = billing.ref if billing.res_type == "Organization" else None
    for enc in prior:
        if enc.get("id") == encounter.get("id") or enc.get("status") in _NOT_SERVICES:
            continue
        began = str((enc.get("period") or {}).get("start", ""))[:10]
        if not began or not since.isoformat() <= began <= dos.isoformat():
            continue  # an open period matches the date search; the service began earlier
        keys = []
        for p in enc.get("participant", []):
            k = ref_key(p.get("individual"))
            if k:
                keys.append(k)
        others: set[str] = set()
        other_groups: set[str] = set()
        other_specialties: set[tuple[Any, Any]] = set()
        for k in keys:
            if k.startswith("PractitionerRole/"):
                role = read(tx, k) or {}
                pk = ref_key(role.get("practitioner"))
                if pk:
                    others.add(pk)
                ok = ref_key(role.get("organization"))
                if ok:
                    other_groups.add(ok)
                other_specialties |= set(_codings(role.get("specialty", [])))
            else:
                others.add(k)
        sp = ref_key(enc.get("serviceProvider"))
        if sp:
            other_groups.add(sp)
        if mine & others:
            return True
        same_specialty = not specialties or not other_specialties or \
            bool(specialties & other_specialties)
        if group and group in other_groups and same_specialty:
            return True
    return False


def gather(ctx: Context, tx: StoreTx, tables: Tables, enc_key: str,
           params: dict[str, Any], base_url: str | None) -> tuple[VisitFacts, Any, Any]:
    """The facts of a finished Encounter, with the payer's rule and fee tables for its date of
    service; 422 naming whatever is missing."""
    encounter = read(tx, enc_key)
    assert encounter is not None  # the caller checked it exists
    status = encounter.get("status")
    if status != "finished":
        raise unprocessable(f"{enc_key} is '{status}': only a finished Encounter is billed",
                            "Encounter.status")
    patient_ref = ref_key(encounter.get("subject"), base_url)
    if not patient_ref or not patient_ref.startswith("Patient/"):
        raise unprocessable(f"{enc_key} has no patient (Encounter.subject)", "Encounter.subject")
    patient = read(tx, patient_ref)
    if patient is None:
        raise unprocessable(f"The patient {patient_ref} is not known", "Encounter.subject")
    location_ref, location = None, None
    for loc in encounter.get("location", []):
        key = ref_key(loc.get("location"), base_url)
        body = read(tx, key) if key else None
        if body is not None:
            location_ref, location = key, body
            break
    site_org = None
    if location is not None:
        org_key = ref_key(location.get("managingOrganization"), base_url)
        org = read(tx, org_key) if org_key else None
        if org_key and org is not None:
            site_org = Party(org_key, org, npi_of(org))
    dos = date_of_service(encounter, location, patient)
    given_dx = params.get("diagnosis") or []
    diagnoses = _diagnoses(ctx, tx, given_dx, encounter, enc_key)
    if not diagnoses:
        raise unprocessable(
            f"{enc_key} has no ICD-10-CM diagnosis: give `diagnosis`, or code "
            "Encounter.reasonCode/reasonReference/diagnosis or a Condition of the Encounter",
            "diagnosis")
    cov_ref, coverage = _coverage(ctx, tx, ref_key(params.get("coverage"), base_url),
                                  patient_ref, dos)
    payer_ref = next((k for k in (ref_key(p, base_url) for p in coverage.get("payor", []))
                      if k), None)
    payer = read(tx, payer_ref) if payer_ref else None
    billing, rendering, specialties = _providers(
        tx, ref_key(params.get("provider"), base_url), encounter)
    all_rules, rules = tables.rules_for(coverage, payer, dos)
    if not all_rules:
        raise unprocessable(f"No payer table matches {cov_ref} (payer {payer_ref}); add a "
                            "rules and a fees table for this payer", "coverage")
    if rules is None:
        raise unprocessable(f"No rules table of payer '{all_rules[0].payer}' is in force on "
                            f"the date of service {dos.isoformat()}", "Encounter.period.start")
    fees = tables.fees_for(rules.payer, dos)
    if fees is None:
        raise unprocessable(f"No fee table of payer '{rules.payer}' covers {dos.year} (date of "
                            f"service {dos.isoformat()}); load one", "Encounter.period.start")
    virtual, channel = _channel(encounter)
    em = rules.get("evaluationAndManagement") or {}
    procedure = params.get("procedure")
    established = False
    if procedure is None:
        established = _established(ctx, tx, patient_ref, encounter, billing, rendering,
                                   specialties, dos, int(em.get("newPatientLookbackYears", 3)))
    org_types: list[tuple[str | None, str | None]] = []
    for party in (billing, rendering):
        if party is not None and party.res_type == "Organization":
            org_types.extend(_codings(party.resource.get("type", [])))
    facts = VisitFacts(
        encounter=encounter, encounter_ref=enc_key, patient=patient, patient_ref=patient_ref,
        dos=dos, minutes=total_minutes(encounter), coverage=coverage, coverage_ref=cov_ref,
        payer=payer, payer_ref=payer_ref, billing=billing, rendering=rendering,
        location=location, location_ref=location_ref, site_org=site_org, diagnoses=diagnoses,
        procedure=(procedure.get("system"), procedure.get("code")) if procedure else None,
        modality=params.get("modality"), channel=channel, virtual=virtual,
        established=established, billing_org_types=org_types,
    )
    return facts, rules, fees


def location_types(location: dict[str, Any] | None) -> list[tuple[str | None, str | None]]:
    return _codings((location or {}).get("type", []))
