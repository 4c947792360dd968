"""Format checks of the identifiers and codes on a claim, and the 837P's own limits:
what pyx12 does not check (https://x12.org/products/technical-reports, 005010X222A1).

- NPI: 10 digits whose last is the Luhn check digit over the prefix 80840 and the first nine
  (CMS NPI standard, https://www.cms.gov/Regulations-and-Guidance/Administrative-Simplification/NationalProvIdentStand/Downloads/NPIcheckdigit.pdf).
- MBI: the 11-character Medicare Beneficiary Identifier format
  (https://www.cms.gov/medicare/new-medicare-card/understanding-the-mbi.pdf).
- ICD-10-CM, CPT and HCPCS Level II code shapes; at most 12 diagnoses (HI), 50 service lines
  (2400 LX) and 4 procedure modifiers (SV101-3..6) per claim."""

from __future__ import annotations

import re

MAX_DIAGNOSES = 12
MAX_LINES = 50
MAX_MODIFIERS = 4

_ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_CPT = re.compile(r"^[0-9]{4}[0-9FTU]$")
_HCPCS = re.compile(r"^[A-V][0-9]{4}$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_MBI_ALPHA = "ACDEFGHJKMNPQRTUVWXY"  # A-Z without S, L, O, I, B, Z
_MBI_SHAPE = "NAXNAXNAANN"  # N numeric, A alpha, X either


def valid_npi(npi: str) -> bool:
    """Whether `npi` is 10 digits with a correct check digit."""
    if len(npi) != 10 or not npi.isdigit() or npi[0] not in "12":
        return False
    digits = [int(d) for d in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def npi_check_digit(first_nine: str) -> str:
    """The check digit that completes a 9-digit NPI base (for making test identifiers)."""
    for d in "0123456789":
        if valid_npi(first_nine + d):
            return d
    raise ValueError(f"no check digit for {first_nine}")


def valid_mbi(mbi: str) -> bool:
    """Whether `mbi` has the Medicare Beneficiary Identifier shape (dashes allowed)."""
    value = mbi.replace("-", "").upper()
    if len(value) != 11:
        return False
    for ch, kind in zip(value, _MBI_SHAPE, strict=True):
        if kind == "N" and not ch.isdigit():
            return False
        if kind == "A" and ch not in _MBI_ALPHA:
            return False
        if kind == "X" and not (ch.isdigit() or ch in _MBI_ALPHA):
            return False
    return value[0] != "0"


def valid_icd10cm(code: str) -> bool:
    return bool(_ICD10CM.match(code.upper()))


def valid_procedure(code: str) -> bool:
    """A CPT (five characters, category II/III ending in F/T/U) or HCPCS Level II code."""
    return bool(_CPT.match(code) or _HCPCS.match(code))


def valid_modifier(code: str) -> bool:
    return bool(_MODIFIER.match(code))


def icd_for_x12(code: str) -> str:
    """ICD-10-CM as the 837P carries it: upper case, without the decimal point."""
    return code.replace(".", "").upper()
