"""A small writer of ANSI ASC X12N 837 Health Care Claim: Professional interchanges,
version 005010X222A1 (https://x12.org/products/technical-reports).

One interchange holds one functional group with one transaction set and one claim:
ISA, GS, ST, BHT; 1000A submitter (NM1*41, PER), 1000B receiver (NM1*40); 2000A billing
provider HL with 2010AA (NM1*85 with the NPI, N3, N4, REF*EI tax id); 2000B subscriber HL
(SBR with the claim filing indicator) with 2010BA (NM1*IL with the member id, N3, N4, DMG) and
2010BB payer (NM1*PR); 2300 CLM (CLM05: place of service, B, frequency), REF*F8 for a
replacement or void, HI (ABK principal, ABF others, no decimal point); 2310B rendering provider
(NM1*82) when it differs from the billing provider; 2400 LX, SV1 (HC:code:modifiers, charge,
UN, units, diagnosis pointers), DTP*472; SE (segment count), GE, IEA with matching control
numbers. Values are stripped of the delimiters and cut to each element's maximum length."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

ELEMENT, COMPONENT, REPETITION, TERMINATOR = "*", ":", "^", "~"
_BAD = re.compile(r"[*:~^\r\n\t]")


@dataclass
class Address:
    line: str
    city: str
    state: str
    postal_code: str


@dataclass
class Name:
    """A person (entity 1: last, first) or an organisation (entity 2: name in `last`)."""

    entity: str
    last: str
    first: str = ""


@dataclass
class ServiceLine:
    code: str
    modifiers: list[str]
    charge: Decimal
    units: Decimal
    pointers: list[int]
    date: str  # CCYYMMDD
    place_of_service: str | None = None  # only when it differs from CLM05-1


@dataclass
class Claim837:
    """Everything one 837P claim needs, already checked (operations.billing.codes)."""

    submitter_id: str
    submitter: Name
    contact_name: str
    contact_phone: str | None
    contact_email: str | None
    receiver_id: str
    receiver_name: str
    billing: Name
    billing_npi: str
    billing_address: Address
    billing_tax_qualifier: str  # EI (EIN) or SY (SSN)
    billing_tax_id: str
    filing_indicator: str  # SBR09, e.g. MB (Medicare Part B)
    subscriber: Name
    member_id: str
    subscriber_address: Address | None
    birth_date: str  # CCYYMMDD
    gender: str  # F M U
    payer_name: str
    payer_id: str
    patient_control_number: str
    total: Decimal
    place_of_service: str
    frequency: str  # 1 original, 7 replacement, 8 void
    prior_payer_claim_number: str | None
    diagnoses: list[str]  # ICD-10-CM without the dot
    lines: list[ServiceLine]
    rendering: Name | None = None
    rendering_npi: str | None = None
    reference: str = ""  # BHT03
    extra: dict[str, str] = field(default_factory=dict)


def clean(value: str, max_len: int) -> str:
    """An element value in plain ASCII (accents dropped), without delimiters or line breaks,
    cut to `max_len`."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return _BAD.sub(" ", ascii_text).strip()[:max_len].strip()


def amount(value: Decimal) -> str:
    """An X12 R (decimal) value: no superfluous zeros, no leading plus."""
    text = f"{value.quantize(Decimal('0.01')):f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text or "0"


def segment(seg_id: str, *elements: str | list[str]) -> str:
    """One segment with trailing empty elements (and components) dropped."""
    parts = [COMPONENT.join(e).rstrip(COMPONENT) if isinstance(e, list) else e
             for e in elements]
    while parts and parts[-1] == "":
        parts.pop()
    return ELEMENT.join([seg_id, *parts]) + TERMINATOR


def _name(qualifier: str, n: Name, id_qualifier: str, ident: str) -> str:
    if n.entity == "1":
        return segment("NM1", qualifier, "1", clean(n.last, 60), clean(n.first, 35), "", "",
                       "", id_qualifier, ident)
    return segment("NM1", qualifier, "2", clean(n.last, 60), "", "", "", "", id_qualifier, ident)


def _address(a: Address) -> list[str]:
    return [segment("N3", clean(a.line, 55)),
            segment("N4", clean(a.city, 30), clean(a.state, 2), clean(a.postal_code, 15))]


def write_837p(c: Claim837, control_number: int, when: datetime, usage: str) -> str:
    """The interchange as text, one segment per line (the segment terminator ends each)."""
    ctl = f"{control_number:09d}"
    if len(ctl) != 9:
        raise ValueError(f"interchange control number {control_number} exceeds 9 digits")
    body: list[str] = [
        segment("ST", "837", "0001", "005010X222A1"),
        segment("BHT", "0019", "00", clean(c.reference or c.patient_control_number, 50),
                when.strftime("%Y%m%d"), when.strftime("%H%M"), "CH"),
        _name("41", c.submitter, "46", clean(c.submitter_id, 80)),
    ]
    contact = ["PER", "IC", clean(c.contact_name, 60)]
    if c.contact_phone:
        contact += ["TE", c.contact_phone]
    if c.contact_email:
        contact += ["EM", clean(c.contact_email, 256)]
    body.append(segment(*contact))
    body.append(_name("40", Name("2", c.receiver_name), "46", clean(c.receiver_id, 80)))
    body.append(segment("HL", "1", "", "20", "1"))
    body.append(_name("85", c.billing, "XX", c.billing_npi))
    body += _address(c.billing_address)
    body.append(segment("REF", c.billing_tax_qualifier, c.billing_tax_id))
    body.append(segment("HL", "2", "1", "22", "0"))
    body.append(segment("SBR", "P", "18", "", "", "", "", "", "", c.filing_indicator))
    body.append(_name("IL", c.subscriber, "MI", clean(c.member_id, 80)))
    if c.subscriber_address:
        body += _address(c.subscriber_address)
    body.append(segment("DMG", "D8", c.birth_date, c.gender))
    body.append(_name("PR", Name("2", c.payer_name), "PI", clean(c.payer_id, 80)))
    body.append(segment("CLM", clean(c.patient_control_number, 38), amount(c.total), "", "",
                        [c.place_of_service, "B", c.frequency], "Y", "A", "Y", "Y"))
    if c.prior_payer_claim_number:
        body.append(segment("REF", "F8", clean(c.prior_payer_claim_number, 50)))
    body.append(segment("HI", *[["ABK" if i == 0 else "ABF", d]
                                for i, d in enumerate(c.diagnoses)]))
    if c.rendering is not None and c.rendering_npi:
        body.append(_name("82", c.rendering, "XX", c.rendering_npi))
    for n, line in enumerate(c.lines, start=1):
        body.append(segment("LX", str(n)))
        body.append(segment("SV1", ["HC", line.code, *line.modifiers], amount(line.charge),
                            "UN", amount(line.units), line.place_of_service or "", "",
                            [str(p) for p in line.pointers]))
        body.append(segment("DTP", "472", "D8", line.date))
    body.append(segment("SE", str(len(body) + 1), "0001"))
    isa = ELEMENT.join([
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", clean(c.submitter_id, 15).ljust(15),
        "ZZ", clean(c.receiver_id, 15).ljust(15), when.strftime("%y%m%d"),
        when.strftime("%H%M"), REPETITION, "00501", ctl, "0", usage, COMPONENT,
    ]) + TERMINATOR
    gs = segment("GS", "HC", clean(c.submitter_id, 15), clean(c.receiver_id, 15),
                 when.strftime("%Y%m%d"), when.strftime("%H%M"), str(control_number), "X",
                 "005010X222A1")
    trailer = [segment("GE", "1", str(control_number)), segment("IEA", "1", ctl)]
    return "\n".join([isa, gs, *body, *trailer]) + "\n"
