"""ADT A40 merge patient, patient identifier list (v2-to-FHIR IG ADT_A40; FHIR Patient.link,
https://hl7.org/fhir/R4/patient.html#links): the Patient of MRG-1 becomes inactive with a
`replaced-by` link to the surviving Patient of PID-3, which gets a `replaces` link, and the
Encounters of the merged Patient are re-pointed to the survivor."""

from __future__ import annotations

from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import patient
from hl7v2_gateway.plan import Repoint, identifier_key


@maps("ADT", "A40")
def merge(src: Source) -> None:
    survivor = patient(src)
    mrgs = src.msg.all("MRG")
    if not mrgs:
        src.msg.require("MRG")  # raises: segment missing
    for mrg in mrgs:
        idents = [i for r in mrg.reps(1) if (i := src.m.identifier(r))]
        if not idents:
            raise mrg.error(1, 101, "MRG-1 (prior patient identifier list) is required")
        main = next((i for i in idents if (i.get("type") or {}).get("coding", [{}])[0]
                     .get("code") == "MR"), idents[0])
        if main == src.plan.items[survivor].ident:
            raise mrg.error(1, 205, "MRG-1 names the surviving patient of PID-3")
        key = "merged:" + identifier_key("Patient", main)
        src.plan.add(key, "Patient", {
            "identifier": idents, "active": False,
            "link": [{"other": src.plan.ref(survivor), "type": "replaced-by"}]}, main)
        links = src.plan.items[survivor].body.setdefault("link", [])
        links.append({"other": src.plan.ref(key), "type": "replaces"})
        src.plan.repoints.append(Repoint("Encounter", "subject", "subject", key, survivor))
