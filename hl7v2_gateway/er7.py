"""The ER7 (pipe-and-hat) form of a v2 message: segments, fields, repetitions, components.

The header is read with hl7apy: the encoding characters from MSH-1/MSH-2 (checked for
duplicates and missing characters), the message structure and the version, which must be one
hl7apy knows (2.1 to 2.8.2). Field values are then taken by position, as the v2-to-FHIR IG
addresses them (PID-3.4.2), and unescaped on access (HL7 v2.5 section 2.7.4). Building
hl7apy's typed element tree for a whole message costs 40-160 ms (0.5 ms a field,
bench/README.md), too slow for a feed of hundreds of messages a second, so the tree is not built.

A field that is empty says nothing; a field that is `""` (two double quotes) says "delete the
value" (HL7 v2.5 section 2.5.3): `Rep.is_null` tells them apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from hl7apy import check_version
from hl7apy.exceptions import InvalidEncodingChars, ParserError, UnsupportedVersion
from hl7apy.parser import get_message_info

from hl7v2_gateway.errors import Hl7Error

NULL = '""'
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True)
class Encoding:
    """The separators and escape character of one message (MSH-1, MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None

    @property
    def msh2(self) -> str:
        return (self.component + self.repetition + self.escape + self.subcomponent
                + (self.truncation or ""))

    def unescape(self, text: str) -> str:
        """Replace escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh..\\ \\.br\\);
        highlighting (\\H\\ \\N\\) and character set switches are dropped."""
        esc = self.escape
        if not esc or esc not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch != esc:
                out.append(ch)
                i += 1
                continue
            end = text.find(esc, i + 1)
            if end < 0:
                out.append(text[i:])
                break
            seq = text[i + 1:end]
            out.append(self._escape_value(seq, text[i:end + 1]))
            i = end + 1
        return "".join(out)

    def _escape_value(self, seq: str, whole: str) -> str:
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent,
                  "R": self.repetition, "E": self.escape, "P": self.truncation or "",
                  "H": "", "N": ""}
        if seq in simple:
            return simple[seq]
        if seq.startswith("X") and len(seq) > 1:
            try:
                return bytes.fromhex(seq[1:]).decode("utf-8", errors="replace")
            except ValueError:
                return whole
        if seq in (".br", ".sp"):
            return "\n"
        if seq[:1] in ("C", "M", "Z") or seq.startswith("."):
            return ""  # character set switch, local escape, formatting command
        return whole

    def escape_text(self, text: str) -> str:
        """`text` with the separators escaped, for writing a message."""
        esc = self.escape
        out = text.replace(esc, f"{esc}E{esc}")
        for ch, code in ((self.field, "F"), (self.component, "S"), (self.subcomponent, "T"),
                         (self.repetition, "R")):
            out = out.replace(ch, f"{esc}{code}{esc}")
        return out.replace("\r", f"{esc}.br{esc}").replace("\n", f"{esc}.br{esc}")


DEFAULT_ENCODING = Encoding()


@dataclass(frozen=True)
class Rep:
    """One repetition of a field: components of subcomponents, as raw (escaped) text."""

    raw: str
    enc: Encoding

    @property
    def is_null(self) -> bool:
        """The field is `""`: delete the value."""
        return self.raw == NULL

    @property
    def empty(self) -> bool:
        return self.raw == ""

    @cached_property
    def _components(self) -> list[str]:
        return self.raw.split(self.enc.component)

    def c(self, i: int = 1) -> str | None:
        """Component `i` (1-based), unescaped, subcomponents joined as written; None if empty."""
        comps = self._components
        if i > len(comps) or not comps[i - 1] or comps[i - 1] == NULL:
            return None
        return self.enc.unescape(comps[i - 1])

    def s(self, i: int, j: int) -> str | None:
        """Subcomponent `j` of component `i` (1-based), unescaped; None if empty."""
        comps = self._components
        if i > len(comps):
            return None
        subs = comps[i - 1].split(self.enc.subcomponent)
        if j > len(subs) or not subs[j - 1] or subs[j - 1] == NULL:
            return None
        return self.enc.unescape(subs[j - 1])

    def comp(self, i: int) -> Rep:
        """Component `i` as a Rep of its own whose components are its subcomponents (for a
        composite inside a composite, such as CX.4 HD)."""
        comps = self._components
        raw = comps[i - 1] if i <= len(comps) else ""
        sub_enc = Encoding(self.enc.subcomponent, self.enc.subcomponent, self.enc.repetition,
                           self.enc.escape, self.enc.subcomponent, self.enc.truncation)
        return Rep(raw, sub_enc)

    def text(self) -> str | None:
        """The whole repetition unescaped (for ST/TX/FT fields, where `^` is not expected)."""
        if not self.raw or self.raw == NULL:
            return None
        return self.enc.unescape(self.raw)


@dataclass
class Segment:
    """One segment; `fields[n]` is field n as raw text (fields[0] is the segment id; for MSH,
    fields[1] is the field separator and fields[2] the encoding characters)."""

    name: str
    fields: list[str]
    enc: Encoding
    sequence: int = 1  # which segment of this id it is, counting from 1
    index: int = 0  # position in the message

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def reps(self, n: int) -> list[Rep]:
        """The repetitions of field n (none if empty; MSH-2 is never split)."""
        raw = self.raw(n)
        if not raw:
            return []
        if self.name == "MSH" and n in (1, 2):
            return [Rep(raw, self.enc)]
        return [Rep(r, self.enc) for r in raw.split(self.enc.repetition)]

    def rep(self, n: int) -> Rep:
        """The first repetition of field n (an empty Rep if there is none)."""
        raw = self.raw(n)
        if self.name == "MSH" and n in (1, 2):
            return Rep(raw, self.enc)
        return Rep(raw.split(self.enc.repetition, 1)[0], self.enc)

    def value(self, n: int, comp: int = 1) -> str | None:
        """Component `comp` of the first repetition of field n, unescaped, or None."""
        return self.rep(n).c(comp)

    def is_null(self, n: int) -> bool:
        """Field n is `""` (delete)."""
        return self.raw(n) == NULL

    def error(self, n: int | None, code: int, text: str, component: int | None = None
              ) -> Hl7Error:
        """An error located at field n of this segment."""
        return Hl7Error(code, text, self.name, self.sequence, n, component)


@dataclass
class Message:
    """A parsed v2 message."""

    text: str
    enc: Encoding
    segments: list[Segment]
    version: str
    structure: str | None
    by_name: dict[str, list[Segment]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Message:
        """Split `text` (segments separated by CR; LF and CR LF are tolerated) into segments.
        Raises Hl7Error when it is not a v2 message or its header cannot be used."""
        text = text.lstrip("\ufeff").strip("\r\n\x00 ")
        lines = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
        if not lines or not lines[0].startswith("MSH"):
            head = lines[0][:3] if lines else ""
            raise Hl7Error(100, f"The message must start with an MSH segment, not '{head}'",
                           "MSH", reject=True)
        try:
            enc_chars, structure, version = get_message_info("\r".join(lines))
        except InvalidEncodingChars as exc:
            raise Hl7Error(102, f"MSH-2 encoding characters are not usable: {exc}", "MSH", 1,
                           2, reject=True) from exc
        except ParserError as exc:
            raise Hl7Error(100, f"Not an HL7 v2 message: {exc}", "MSH", reject=True) from exc
        enc = Encoding(enc_chars["FIELD"], enc_chars["COMPONENT"], enc_chars["REPETITION"],
                       enc_chars["ESCAPE"], enc_chars["SUBCOMPONENT"],
                       enc_chars.get("TRUNCATION"))
        if enc.field.isalnum() or any(c.isalnum() or c.isspace() for c in enc.msh2):
            raise Hl7Error(102, f"MSH-1/MSH-2 encoding characters '{enc.field}{enc.msh2}' must "
                           "not be letters, digits or spaces", "MSH", 1, 2, reject=True)
        if not version:
            raise Hl7Error(101, "MSH-12 (version id) is required", "MSH", 1, 12, reject=True)
        try:
            check_version(version)
        except UnsupportedVersion as exc:
            raise Hl7Error(203, f"Version '{version}' is not supported (2.1 to 2.8.2 are)",
                           "MSH", 1, 12) from exc
        segments: list[Segment] = []
        by_name: dict[str, list[Segment]] = {}
        for i, line in enumerate(lines):
            parts = line.split(enc.field)
            name = parts[0]
            if not _SEGMENT_ID.match(name):
                raise Hl7Error(100, f"Segment {i + 1} has no valid segment id: '{name[:10]}'",
                               name[:3] or None, reject=False)
            if name == "MSH":
                parts = ["MSH", enc.field, *parts[1:]]
            same = by_name.setdefault(name, [])
            seg = Segment(name, parts, enc, len(same) + 1, i)
            same.append(seg)
            segments.append(seg)
        if len(by_name["MSH"]) > 1:
            raise Hl7Error(100, "A message has one MSH segment (batches are not accepted)",
                           "MSH", 2, reject=True)
        return cls(text, enc, segments, version, structure, by_name)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        found = self.by_name.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Segment]:
        return self.by_name.get(name, [])

    def require(self, name: str) -> Segment:
        """The first segment `name`, or an AE error naming it (100: segment missing)."""
        seg = self.first(name)
        if seg is None:
            raise Hl7Error(100, f"Required segment {name} is missing", name)
        return seg

    def after(self, seg: Segment) -> Iterator[Segment]:
        """The segments following `seg`."""
        return iter(self.segments[seg.index + 1:])

    # -- header -------------------------------------------------------------------------

    @property
    def message_type(self) -> str:
        return (self.msh.value(9, 1) or "").upper()

    @property
    def trigger_event(self) -> str:
        return (self.msh.value(9, 2) or "").upper()

    @property
    def control_id(self) -> str | None:
        return self.msh.rep(10).text()

    @property
    def processing_id(self) -> str:
        return self.msh.value(11, 1) or "P"

    @property
    def sending_application(self) -> str:
        return self.msh.raw(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.raw(4)

    @property
    def sender_key(self) -> str:
        """Who sent it, as the dedupe key: MSH-3 and MSH-4 as written."""
        return f"{self.msh.raw(3)}|{self.msh.raw(4)}"

    @property
    def enhanced(self) -> bool:
        """Enhanced acknowledgment mode: MSH-15 or MSH-16 is valued (HL7 v2.5 2.9.3)."""
        return bool(self.ack_condition(15) or self.ack_condition(16))

    def ack_condition(self, n: int) -> str | None:
        """MSH-15 (accept) or MSH-16 (application) acknowledgment type (table 0155)."""
        value = (self.msh.value(n) or "").strip().upper()
        return value or None
