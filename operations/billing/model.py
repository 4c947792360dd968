"""The facts a claim is made from and the plan the rules make of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fhir_server.errors import FhirError

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
TAX_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.4"  # US IRS employer identification number
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MBI_SYSTEM = "http://hl7.org/fhir/sid/us-mbi"
VIRTUAL_SERVICE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.virtualService"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MODALITIES = ("audio-video", "audio-only", "store-and-forward")


def unprocessable(message: str, expression: str | None = None) -> FhirError:
    """422: the request is well formed but the visit cannot be billed as it stands."""
    return FhirError.of(422, "business-rule", message, expression)


@dataclass(frozen=True)
class Party:
    """A resource that takes part in the claim (billing or rendering provider, facility)."""

    ref: str  # "Practitioner/123"
    resource: dict[str, Any]
    npi: str | None

    @property
    def res_type(self) -> str:
        return self.ref.split("/", 1)[0]


@dataclass
class VisitFacts:
    """What was read from the store about one finished Encounter."""

    encounter: dict[str, Any]
    encounter_ref: str
    patient: dict[str, Any]
    patient_ref: str
    dos: date
    minutes: int | None
    coverage: dict[str, Any]
    coverage_ref: str
    payer: dict[str, Any] | None
    payer_ref: str | None
    billing: Party
    rendering: Party | None
    location: dict[str, Any] | None
    location_ref: str | None
    site_org: Party | None  # the Location's managing Organization
    diagnoses: list[str]  # ICD-10-CM codes as written (with or without the dot)
    procedure: tuple[str, str] | None  # (system, code) given as input
    modality: str | None  # given as input
    channel: tuple[str | None, str | None] | None  # virtualService channel type
    virtual: bool
    established: bool
    billing_org_types: list[tuple[str | None, str | None]] = field(default_factory=list)


@dataclass
class Denial:
    """Why a payer does not pay a line: the table's denial key, CARC and text."""

    key: str
    carc: str
    text: str


@dataclass
class Line:
    """One service line of a planned claim."""

    system: str
    code: str
    modifiers: list[tuple[str, str]]
    place_of_service: str | None
    amount: Decimal
    category: str | None = None
    revenue_code: str | None = None
    denial: Denial | None = None


@dataclass
class ClaimPlan:
    """One claim to write: the distant-site professional claim or the originating site's
    facility claim."""

    role: str  # "distant-site" | "originating-site"
    claim_type: str  # "professional" | "institutional"
    provider: Party
    rendering: Party | None
    lines: list[Line]
    place_of_service: str | None
    type_of_bill: str | None = None


@dataclass
class Plan:
    """Everything the rules decided for a visit."""

    claims: list[ClaimPlan]
    place: str  # "home" | "elsewhere"
    modality: str
    rules_path: str
    fees_path: str
