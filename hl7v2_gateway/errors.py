"""Errors found in a v2 message, with what an ACK's ERR segment needs to name them.

Codes from HL7 table 0357 (message error condition codes,
https://terminology.hl7.org/CodeSystem-v2-0357.html)."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_CODES = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}

REJECT_CODES = frozenset({200, 201, 202, 203})
"""Conditions answered with AR (the message is refused as a whole, HL7 v2.5 section 2.9.2);
the others are AE (the message was understood, its content is in error)."""


@dataclass
class Hl7Error(Exception):
    """One problem: the table 0357 `code`, where it is (segment id, its position among the
    segments of that id counting from 1, field, component) and a message for people."""

    code: int
    text: str
    segment: str | None = None
    sequence: int = 1
    field: int | None = None
    component: int | None = None
    reject: bool | None = None  # None: from the code
    severity: str = "E"  # table 0516: E error, W warning (the message was still accepted)

    def __str__(self) -> str:
        return f"{self.location or 'message'}: {self.text} ({self.code} {self.name})"

    @property
    def name(self) -> str:
        return ERROR_CODES.get(self.code, "Application error")

    @property
    def rejects(self) -> bool:
        """Whether the ACK is AR rather than AE."""
        return self.code in REJECT_CODES if self.reject is None else self.reject

    @property
    def location(self) -> str:
        """Where, as in ERR-2 (ERL): PID^1^7 (segment^sequence^field^^component)."""
        if not self.segment:
            return ""
        parts = [self.segment, str(self.sequence)]
        if self.field is not None:
            parts.append(str(self.field))
            if self.component is not None:
                parts += ["1", str(self.component)]
        return "^".join(parts)
