"""v2 data types to FHIR data types, after the v2-to-FHIR IG's data type maps
(https://build.fhir.org/ig/HL7/v2-to-fhir/datatype_maps.html): CX[Identifier], XPN[HumanName],
XAD[Address], XTN[ContactPoint], CWE[CodeableConcept], XCN[Practitioner], EI[Identifier],
SN, CQ and DTM. Each function takes one repetition (`Rep`) and returns the FHIR value or None.
A bad date or number raises Hl7Error 102 at the field it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hl7v2_gateway.er7 import Rep, Segment
from hl7v2_gateway.settings import GatewaySettings
from hl7v2_gateway.timefmt import BadTime, V2Time, parse_dtm

V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"

CODING_SYSTEMS = {
    "LN": "http://loinc.org", "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct",
    "SNM3": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct",
    "SCT2": "http://snomed.info/sct",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10", "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm", "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "UCUM": "http://unitsofmeasure.org", "NDC": "http://hl7.org/fhir/sid/ndc",
    "CVX": "http://hl7.org/fhir/sid/cvx", "MVX": "http://hl7.org/fhir/sid/mvx",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt", "CPT": "http://www.ama-assn.org/go/cpt",
    "C5": "http://www.ama-assn.org/go/cpt", "HCPCS": "urn:oid:2.16.840.1.113883.6.285",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238", "ISO3166_1": "urn:iso:std:iso:3166",
    "NPI": "http://hl7.org/fhir/sid/us-npi", "ISO+": "urn:iso:std:iso:2955",
    "ANSI+": "urn:oid:2.16.840.1.113883.6.9",
}


def coding_system(name: str | None) -> str | None:
    """The FHIR system URI of a v2 coding system name (CWE.3): HL7nnnn tables, the IG's list
    of external systems; None when not recognised."""
    if not name:
        return None
    upper = name.upper()
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    m = re.match(r"^HL7(\d{4})$", upper)
    if m:
        return f"{V2_TABLE}{m.group(1)}"
    if re.match(r"^\d+(\.\d+){2,}$", name):
        return f"urn:oid:{name}"
    return None


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


def coding(code: str | None, display: str | None, system_name: str | None) -> dict[str, Any]:
    return _compact({"system": coding_system(system_name), "code": code, "display": display})


def codeable(rep: Rep, table: str | None = None) -> dict[str, Any] | None:
    """CWE/CE/CNE[CodeableConcept]: the primary and alternate codings, original text (CWE.9);
    `table` is the HL7 table the field is bound to (used when CWE.3 is empty)."""
    if rep.empty or rep.is_null:
        return None
    codings = []
    code, display, sysname = rep.c(1), rep.c(2), rep.c(3)
    if code or display:
        c = coding(code, display, sysname or (f"HL7{table}" if table and code else None))
        if c:
            codings.append(c)
    alt = coding(rep.c(4), rep.c(5), rep.c(6))
    if alt.get("code"):
        codings.append(alt)
    text = rep.c(9)
    out = _compact({"coding": [c for c in codings if c.get("code")] or None, "text": text})
    if not out and display:
        out = {"text": display}
    if "coding" not in out and code is None and display:
        out["text"] = display
    return out or None


def code_of(rep: Rep) -> str | None:
    """The code (first component) of an ID/IS/CWE value."""
    return None if rep.empty or rep.is_null else rep.c(1)


@dataclass
class Mapper:
    """What every mapping function needs: the settings and where errors point."""

    settings: GatewaySettings
    sending_facility: str = ""

    # -- dates, numbers -------------------------------------------------------------------

    def time(self, seg: Segment, n: int, rep: Rep | None = None, comp: int = 1) -> V2Time | None:
        """DTM/TS field n of `seg` (or component `comp` of `rep`); 102 if it is not a date."""
        r = rep if rep is not None else seg.rep(n)
        text = r.c(comp)
        if not text:
            return None
        try:
            return parse_dtm(text, self.settings.tz)
        except BadTime as exc:
            raise seg.error(n, 102, f"{seg.name}-{n}: {exc}", comp if rep is not None else None
                            ) from exc

    def fhir_time(self, seg: Segment, n: int) -> str | None:
        t = self.time(seg, n)
        return t.fhir if t else None

    def number(self, seg: Segment, n: int, text: str | None) -> float | int | None:
        """An NM value (HL7 v2.5 2.A.47: optional sign, digits, optional decimal point)."""
        if text is None:
            return None
        t = text.strip()
        if not re.match(r"^[+-]?(\d+\.?\d*|\.\d+)$", t):
            raise seg.error(n, 102, f"{seg.name}-{n}: '{text}' is not a number (NM)")
        v = float(t)
        return int(v) if "." not in t and abs(v) < 2**53 else v

    # -- identifiers ----------------------------------------------------------------------

    def system_of(self, hd: Rep) -> str | None:
        """HD[Identifier.system] through the configuration (settings.identifier_system)."""
        return self.settings.identifier_system(hd.c(1), hd.c(2), hd.c(3))

    def identifier(self, rep: Rep, fallback_authority: str | None = None
                   ) -> dict[str, Any] | None:
        """CX[Identifier]: CX.1 value, CX.4 assigning authority -> system, CX.5 type (0203),
        CX.7/CX.8 period."""
        if rep.empty or rep.is_null:
            return None
        value = rep.c(1)
        if not value:
            return None
        system = self.system_of(rep.comp(4)) if rep.c(4) else None
        if system is None:
            system = self.settings.identifier_system(
                fallback_authority or self.sending_facility_namespace, None, None)
        ident: dict[str, Any] = {"value": value}
        if system:
            ident["system"] = system
        id_type = rep.c(5)
        if id_type:
            ident["type"] = {"coding": [{"system": f"{V2_TABLE}0203", "code": id_type}]}
        return ident

    @property
    def sending_facility_namespace(self) -> str:
        """The namespace of MSH-4, the authority of identifiers that name none."""
        return self.sending_facility.split("^")[0] or "local"

    def entity_identifier(self, rep: Rep) -> dict[str, Any] | None:
        """EI[Identifier]: EI.1 value, EI.2..4 assigning authority (namespace, universal id,
        its type)."""
        if rep.empty or rep.is_null or not rep.c(1):
            return None
        system = self.settings.identifier_system(rep.c(2), rep.c(3), rep.c(4))
        if system is None:
            system = self.settings.identifier_system(self.sending_facility_namespace, None, None)
        return _compact({"system": system, "value": rep.c(1)})

    # -- names, addresses, telecoms -------------------------------------------------------

    def human_name(self, rep: Rep, family_comp: int = 1) -> dict[str, Any] | None:
        """XPN[HumanName] (XCN uses the same parts shifted by one: family_comp=2)."""
        if rep.empty or rep.is_null:
            return None
        o = family_comp - 1
        family = rep.s(1 + o, 1)
        given = [g for g in (rep.c(2 + o), rep.c(3 + o)) if g]
        use = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous",
               "B": "official", "C": "old", "P": "usual", "T": "temp", "U": "old",
               "I": "usual", "S": "anonymous", "R": "official"}.get(
            (rep.c(7 + o) or "").upper()) if family_comp == 1 else None
        name = _compact({
            "use": use,
            "family": family,
            "given": given or None,
            "prefix": [rep.c(5 + o)] if rep.c(5 + o) else None,
            "suffix": [s for s in (rep.c(4 + o), rep.c(6 + o)) if s] or None,
        })
        return name or None

    def address(self, rep: Rep) -> dict[str, Any] | None:
        """XAD[Address]."""
        if rep.empty or rep.is_null:
            return None
        street = " ".join(x for x in (rep.s(1, 1), rep.s(1, 2), rep.s(1, 3)) if x)
        line = [x for x in (street, rep.c(2)) if x]
        addr_type = (rep.c(7) or "").upper()
        use = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "billing",
               "M": None, "P": None}.get(addr_type)
        atype = {"M": "postal", "P": "physical", "SH": "postal"}.get(addr_type)
        out = _compact({
            "use": use, "type": atype, "line": line or None, "city": (rep.c(3) or "").strip(),
            "state": rep.c(4), "postalCode": rep.c(5), "country": rep.c(6),
            "district": rep.s(9, 1),
        })
        return out or None

    def contact_point(self, rep: Rep, default_use: str | None = None) -> dict[str, Any] | None:
        """XTN[ContactPoint]: XTN.1 (deprecated) or XTN.4 email / XTN.5-7 phone parts."""
        if rep.empty or rep.is_null:
            return None
        use_code = (rep.c(2) or "").upper()
        equip = (rep.c(3) or "").upper()
        use = {"PRN": "home", "ORN": "home", "WPN": "work", "VHN": "home", "ASN": "work",
               "EMR": "home", "NET": "home", "BPN": "work", "PRS": "mobile"}.get(
            use_code, default_use)
        system = {"PH": "phone", "FX": "fax", "MD": "other", "CP": "phone", "BP": "pager",
                  "INTERNET": "email", "X.400": "email", "TDD": "other", "TTY": "other"}.get(
            equip)
        if use_code == "NET" or equip in ("INTERNET", "X.400"):
            value = rep.c(4) or rep.c(1)
            system = "email"
        else:
            cc, area, local = rep.c(5), rep.c(6), rep.c(7)
            if rep.c(12):
                value = rep.c(12)
            elif local:
                value = " ".join(x for x in (f"+{cc}" if cc else None,
                                             f"({area})" if area else None, local) if x)
                if rep.c(8):
                    value += f" ext. {rep.c(8)}"
            else:
                value = rep.c(1)
            system = system or "phone"
        if equip == "CP" and use_code not in ("WPN", "PRS"):
            use = "mobile"
        if not value:
            return None
        return _compact({"system": system, "value": value, "use": use})

    def practitioner(self, rep: Rep) -> tuple[dict[str, Any] | None, dict[str, Any]] | None:
        """XCN[Practitioner]: (identifier, the Practitioner's elements); None if empty."""
        if rep.empty or rep.is_null or not (rep.c(1) or rep.c(2)):
            return None
        ident: dict[str, Any] | None = None
        if rep.c(1):
            system = self.system_of(rep.comp(9)) if rep.c(9) else None
            if system is None:
                system = self.settings.identifier_system(self.sending_facility_namespace + "-staff",
                                                         None, None)
            ident = {"system": system, "value": rep.c(1)}
            if rep.c(13):
                ident["type"] = {"coding": [{"system": f"{V2_TABLE}0203", "code": rep.c(13)}]}
        body: dict[str, Any] = {"resourceType": "Practitioner"}
        name = self.human_name(rep, family_comp=2)
        if name:
            body["name"] = [name]
        if ident:
            body["identifier"] = [ident]
        return ident, body


def quantity(value: float | int, unit_rep: Rep | None) -> dict[str, Any]:
    """A Quantity of `value` in the unit of a CWE units field, UCUM where recognisable."""
    q: dict[str, Any] = {"value": value}
    if unit_rep is None or unit_rep.empty:
        return q
    code, text, sysname = unit_rep.c(1), unit_rep.c(2), (unit_rep.c(3) or "").upper()
    if not code:
        if text:
            q["unit"] = text
        return q
    q["unit"] = text or code
    known = ucum_for(code)
    if known:
        q["system"] = "http://unitsofmeasure.org"
        q["code"] = known
    elif sysname in ("UCUM", "ISO+", "ANSI+", "ISO", "") and is_ucum(code):
        q["system"] = "http://unitsofmeasure.org"
        q["code"] = code
    else:
        system = coding_system(sysname)
        if system:
            q["system"] = system
            q["code"] = code
    return q


_UCUM_ATOM = re.compile(
    r"^(\{[^}]*\}|[0-9]+(\*[+-]?[0-9]+)?|10\^[+-]?[0-9]+|%|[a-zA-Z\[\]']+[0-9]*)$")
_COMMON_NOT_UCUM = {"beats/min": "/min", "bpm": "/min", "mmhg": "mm[Hg]", "degf": "[degF]",
                    "degc": "Cel", "lbs": "[lb_av]", "lb": "[lb_av]", "in": "[in_i]",
                    "inches": "[in_i]", "sec": "s", "hr": "h", "hrs": "h", "mins": "min"}


def is_ucum(code: str) -> bool:
    """Whether `code` is shaped like a UCUM expression (atoms with prefixes, `.`, `/`,
    exponents, annotations) and not a known non-UCUM spelling."""
    if code.lower() in _COMMON_NOT_UCUM:
        return False
    terms = re.split(r"[./]", code)
    return all(t == "" or _UCUM_ATOM.match(t) for t in terms) and not code.endswith(".")


def ucum_for(code: str) -> str | None:
    """The UCUM code for a common non-UCUM spelling (beats/min -> /min)."""
    return _COMMON_NOT_UCUM.get(code.lower())
