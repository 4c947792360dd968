"""Acknowledgments: original mode (MSA AA/AE/AR) and enhanced mode (CA/CE/CR as the accept
acknowledgment, MSH-15/MSH-16), with an ERR segment per problem.

HL7 v2.5 section 2.9 (acknowledgment modes), 2.14.4 MSA, 2.14.5 ERR
(https://www.hl7.eu/refactored/ch02.html#2.9, v2-to-FHIR IG "ACK"): the ACK's MSH swaps sender
and receiver, echoes the version and processing id and carries its own control id in MSH-10;
MSA-2 names the control id being acknowledged."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

from hl7v2_gateway.er7 import DEFAULT_ENCODING, Encoding, Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.timefmt import now_dtm

_counter = itertools.count(1)
_PREFIX = f"{os.getpid() % 10000:04d}"


def new_control_id() -> str:
    """A message control id of our own: unique across processes and restarts, 20 characters
    (the v2.5 length of MSH-10)."""
    return f"TF{int(time.time() * 1000) % 10**11:011d}{_PREFIX}{next(_counter) % 1000:03d}"


@dataclass(frozen=True)
class AckDecision:
    """What the message earned: an application code (AA, AE, AR) and the errors behind it."""

    code: str
    errors: tuple[Hl7Error, ...] = ()

    @classmethod
    def of(cls, errors: list[Hl7Error], warnings: list[Hl7Error] | None = None) -> AckDecision:
        if not errors:
            return cls("AA", tuple(warnings or ()))
        return cls("AR" if any(e.rejects for e in errors) else "AE", tuple(errors))


def _accept_code(app_code: str) -> str:
    return {"AA": "CA", "AE": "CE", "AR": "CR"}[app_code]


def _wanted(condition: str | None, success: bool) -> bool:
    """Whether an acknowledgment is asked for (table 0155: AL, NE, ER, SU)."""
    cond = (condition or "AL").upper()
    return cond == "AL" or (cond == "ER" and not success) or (cond == "SU" and success)


def response_code(msg: Message | None, decision: AckDecision) -> str | None:
    """The MSA-1 to answer on the connection, or None when the sender asked for none.

    Original mode: the application acknowledgment. Enhanced mode: the accept acknowledgment
    (CA/CE/CR) when MSH-15 asks for one; else the application acknowledgment when MSH-16 asks
    for one (the message was mapped before the answer, so it is known); else nothing."""
    if msg is None or not msg.enhanced:
        return decision.code
    success = decision.code == "AA"
    accept = msg.ack_condition(15)
    if accept and _wanted(accept, success):
        return _accept_code(decision.code)
    if accept and not _wanted(accept, success):
        application = msg.ack_condition(16)
        if application and _wanted(application, success):
            return decision.code
        return None
    return decision.code if _wanted(msg.ack_condition(16), success) else None


def build_ack(msg: Message | None, code: str, errors: tuple[Hl7Error, ...] = (),
              own_application: str = "telefhir", own_facility: str = "") -> str:
    """The ACK message text (segments ended by CR)."""
    enc = msg.enc if msg is not None else DEFAULT_ENCODING
    f = enc.field
    version = msg.version if msg is not None else "2.5"
    if msg is not None:
        m = msg.msh
        receiver_app, receiver_fac = m.raw(3), m.raw(4)
        own_app = m.raw(5) or enc.escape_text(own_application)
        own_fac = m.raw(6) or enc.escape_text(own_facility)
        event = msg.trigger_event
        processing = m.raw(11) or "P"
        acked_id = m.raw(10)
    else:
        receiver_app = receiver_fac = event = acked_id = ""
        own_app, own_fac, processing = enc.escape_text(own_application), own_facility, "P"
    c = enc.component
    msg_type = f"ACK{c}{event}{c}ACK" if event and version >= "2.4" else (
        f"ACK{c}{event}" if event else "ACK")
    msh = ["MSH", enc.msh2, own_app, own_fac, receiver_app, receiver_fac, now_dtm(), "",
           msg_type, new_control_id(), processing, version]
    segments = [f.join(msh)]
    msa = ["MSA", code, acked_id]
    if errors and version < "2.7":
        msa.append(enc.escape_text(errors[0].text[:80]))
    segments.append(f.join(msa))
    for err in errors:
        segments.append(_err_segment(err, enc, version))
    return "\r".join(segments) + "\r"


def _err_segment(err: Hl7Error, enc: Encoding, version: str) -> str:
    f, c, s = enc.field, enc.component, enc.subcomponent
    text = enc.escape_text(err.text)
    name = enc.escape_text(err.name)
    severity = err.severity
    if version >= "2.5":
        location = err.location.replace("^", c)
        return f.join(["ERR", "", location, f"{err.code}{c}{name}{c}HL70357", severity,
                       "", "", "", text])
    # v2.3/2.4: ERR-1 ELD: segment^sequence^field^code&text&table
    parts = [err.segment or "", str(err.sequence) if err.segment else "",
             str(err.field) if err.field is not None else "",
             f"{err.code}{s}{name}{s}HL70357"]
    return f.join(["ERR", c.join(parts)])


def not_hl7_ack(err: Hl7Error, text: str = "", own_application: str = "telefhir") -> str:
    """The AR answered to bytes that are not a usable HL7 v2 message. When they start like an
    MSH with `|` fields, its control id, parties and version are echoed as far as they can be
    read, so that the sender can tell which message was refused."""
    first = text.lstrip("\ufeff\r\n").split("\r", 1)[0].split("\n", 1)[0]
    fields = first.split("|") if first.startswith("MSH|") else []
    if len(fields) < 10:
        return build_ack(None, "AR", (err,), own_application)

    def f(n: int) -> str:  # MSH-n, n >= 3
        v = fields[n - 1] if len(fields) >= n else ""
        return v if all(c not in v for c in "\r\n\x0b\x1c") else ""

    version = f(12).split("^")[0]
    version = version if version[:2] == "2." and len(version) <= 6 else "2.5"
    msh = ["MSH", "^~\\&", f(5) or own_application, f(6), f(3), f(4), now_dtm(), "", "ACK",
           new_control_id(), f(11)[:1] or "P", version]
    parts = "|".join(msh) + "\r" + f"MSA|AR|{f(10)[:199]}\r"
    return parts + _err_segment(err, DEFAULT_ENCODING, version) + "\r"
