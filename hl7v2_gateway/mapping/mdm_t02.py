"""MDM T02 original document notification and content to DocumentReference with the document
as its attachment: OBX-5 text (TX, FT, ST) as text/plain, or an ED value with its own MIME type
and Base64 data (v2-to-FHIR IG MDM_T02, TXA[DocumentReference])."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from hl7v2_gateway.datatypes import codeable
from hl7v2_gateway.mapping import Source, maps
from hl7v2_gateway.mapping.common import encounter, patient, practitioner
from hl7v2_gateway.plan import identifier_key

DOC_STATUS = {"AU": "final", "LA": "final", "DO": "final", "PA": "preliminary",
              "IP": "preliminary", "IN": "preliminary", "DI": "preliminary"}
AVAILABILITY = {"AV": "current", "UN": "current", "CA": "entered-in-error",
                "OB": "superseded", "AR": "superseded", "PU": "current"}


@maps("MDM", "T02")
def mdm(src: Source) -> None:
    m = src.m
    txa = src.msg.require("TXA")
    pat = patient(src)
    enc = encounter(src, pat)
    ident = m.entity_identifier(txa.rep(12))
    if ident is None:
        raise txa.error(12, 101, "TXA-12 (unique document number) is required")
    status = AVAILABILITY.get((txa.value(19) or "AV").upper(), "current")
    body: dict[str, Any] = {"masterIdentifier": ident, "identifier": [ident],
                            "status": status, "subject": src.plan.ref(pat)}
    doc_status = DOC_STATUS.get((txa.value(17) or "").upper())
    if doc_status:
        body["docStatus"] = doc_status
    doc_type = codeable(txa.rep(2), "0270")
    if doc_type:
        body["type"] = doc_type
    when = m.time(txa, 4) or m.time(txa, 6) or m.time(txa, 7)
    if when and when.precision == "second":
        body["date"] = when.fhir
    authors = [src.plan.ref(k) for r in txa.reps(9) if (k := practitioner(src, r))]
    if authors:
        body["author"] = authors
    auth = next((k for r in txa.reps(10) if (k := practitioner(src, r))), None)
    if auth:
        body["authenticator"] = src.plan.ref(auth)
    if enc:
        body["context"] = {"encounter": [src.plan.ref(enc)]}
    texts: list[str] = []
    contents: list[dict[str, Any]] = []
    for obx in src.msg.all("OBX"):
        vtype = (obx.value(2) or "").upper()
        for rep in obx.reps(5):
            if vtype == "ED":
                kind, sub, encoding, data = rep.c(2), rep.c(3), (rep.c(4) or "").upper(), rep.c(5)
                if not data:
                    continue
                if encoding in ("BASE64", "A") or encoding == "":
                    raw_b64 = data if encoding == "BASE64" else base64.b64encode(
                        data.encode()).decode()
                    try:
                        base64.b64decode(raw_b64, validate=True)
                    except binascii.Error as exc:
                        raise obx.error(5, 102, "OBX-5 ED data is not valid Base64") from exc
                else:
                    raise obx.error(5, 102, f"OBX-5 ED encoding '{encoding}' is not supported "
                                            "(Base64 or A)")
                ctype = f"{(kind or 'application').lower()}/{(sub or 'octet-stream').lower()}"
                contents.append({"attachment": {"contentType": ctype, "data": raw_b64}})
            else:
                text = rep.text()
                if text:
                    texts.append(text)
    if texts:
        doc = "\n".join(texts).encode("utf-8")
        contents.insert(0, {"attachment": {"contentType": "text/plain; charset=utf-8",
                                           "data": base64.b64encode(doc).decode(),
                                           "size": len(doc)}})
    if not contents:
        obxs = src.msg.all("OBX")
        if not obxs:
            src.msg.require("OBX")
        raise obxs[0].error(5, 101, "OBX-5 (the document content) is empty")
    title = txa.value(2, 2) or (doc_type or {}).get("text")
    if title:
        contents[0]["attachment"]["title"] = title
    body["content"] = contents
    src.plan.add(identifier_key("DocumentReference", ident), "DocumentReference", body, ident)
