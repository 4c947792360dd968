"""XML -> JSON for R4 resources (https://hl7.org/fhir/R4/xml.html to
https://hl7.org/fhir/R4/json.html), driven by the per-type tables of `resources.xml_tables`.

The body is parsed by lxml with entity expansion, DTD loading and network access off and no
huge-tree mode; a document with a DOCTYPE is refused outright (no XXE, no entity expansion
"billion laughs"). The tree must match the R4 definitions: elements in the FHIR namespace and in
definition order, known names, a repeating element only where the definition allows it, no text
outside the narrative, `value`/`id`/`url` attributes only where FHIR has them, booleans,
integers and decimals in their lexical forms. Anything else is an `XmlParseError` naming the
element at fault. Decimals keep their digits (`1.50` stays `1.50` in the JSON text).
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

import orjson
from lxml import etree

from resources import json_numbers
from resources.xml_tables import (
    COMPLEX,
    DECIMAL_RE,
    FHIR_NS,
    INTEGER_RE,
    PRIMITIVE,
    RESOURCE,
    V_BOOLEAN,
    V_DECIMAL,
    V_INTEGER,
    XHTML,
    XHTML_NS,
    Slot,
    Table,
    tables,
)

_FHIR = "{" + FHIR_NS + "}"
_FHIR_LEN = len(_FHIR)
_DIV = "{" + XHTML_NS + "}div"
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
MAX_DEPTH = 200  # elements deep; lxml's own limit without huge_tree is 256


class XmlParseError(ValueError):
    """The body is not FHIR XML. `path` names where (FHIRPath-like, "" for the document); it
    is built as the error travels up, so reading costs nothing for it."""

    def __init__(self, message: str, *segments: str) -> None:
        super().__init__(message)
        self.message = message
        self.segments = list(segments)  # innermost first

    def within(self, segment: str) -> XmlParseError:
        self.segments.append(segment)
        return self

    @property
    def path(self) -> str:
        return ".".join(reversed(self.segments))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.segments else self.message


_local = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are not shared across threads)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,  # no entity expansion (billion laughs, XXE)
            load_dtd=False,  # no external DTD
            dtd_validation=False,
            no_network=True,  # nothing fetched, ever
            huge_tree=False,  # libxml2's limits on depth and text size stay on
            remove_comments=True,  # comments are not content
            remove_pis=True,
            collect_ids=False,
            strip_cdata=True,
        )
        _local.parser = parser
    return parser


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


class _Reader:
    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def resource(self, el: Any, nested: bool) -> dict[str, Any]:
        tag = el.tag
        if type(tag) is not str or not tag.startswith(_FHIR):
            raise XmlParseError(f"<{_show(tag)}> is not a FHIR resource: a resource is an "
                                f"element named by its type in the namespace {FHIR_NS}")
        rtype = tag[len(_FHIR):]
        table = tables().resources.get(rtype)
        if table is None:
            raise XmlParseError(f"'{rtype}' is not an R4 resource type")
        out: dict[str, Any] = {"resourceType": rtype}
        try:
            for name in el.attrib:
                if not name.startswith(_XSI):
                    raise XmlParseError(f"a resource element has no attribute '{_show(name)}'")
            self.children(el, table, out)
        except XmlParseError as exc:
            raise (exc if nested else exc.within(rtype)) from None
        return out

    def children(self, el: Any, table: Table, out: dict[str, Any]) -> None:
        """The child elements of `el` into `out`, checked against `table`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise XmlParseError("the XML is nested too deeply")
        text = el.text
        if text is not None and text.strip():
            raise XmlParseError("text is not allowed here; values go in value attributes")
        slots = table.slots
        last: Slot | None = None
        group: list[Any] = []
        for child in el:
            tail = child.tail
            if tail is not None and tail.strip():
                raise XmlParseError("text is not allowed here; values go in value attributes")
            tag = child.tag
            if type(tag) is not str:
                raise XmlParseError("unexpected XML content (an entity reference?)")
            if tag.startswith(_FHIR):
                slot = slots.get(tag[_FHIR_LEN:])
                if slot is not None and slot.kind == XHTML:
                    raise XmlParseError("the narrative <div> must be in the XHTML namespace "
                                        f"{XHTML_NS}", "div")
            elif tag == _DIV:
                slot = slots.get("div")
            else:
                slot = None
            if slot is None:
                raise XmlParseError(f"unknown element <{_show(tag)}>", _local_name(tag))
            if slot is not last:
                if last is not None:
                    if slot.order < last.order:
                        raise XmlParseError(
                            f"<{slot.name}> must come before <{last.name}> (elements appear "
                            "in the order of their definition)", slot.name)
                    if slot.order == last.order:
                        raise XmlParseError(
                            f"<{slot.name}> and <{last.name}> are two types of one choice "
                            "element; only one is allowed", slot.name)
                    self.slot(last, group, out)
                last = slot
                group = [child]
            elif not slot.is_array:
                raise XmlParseError(f"<{slot.name}> may appear only once", slot.name)
            else:
                group.append(child)
        if last is not None:
            self.slot(last, group, out)
        self.depth -= 1

    def slot(self, slot: Slot, elements: list[Any], out: dict[str, Any]) -> None:
        """The JSON of one element's occurrences (consecutive siblings of one name)."""
        name = slot.name
        kind = slot.kind
        many = slot.is_array
        i = 0
        try:
            if kind == PRIMITIVE:
                if not many:
                    value, extra = self.primitive(slot, elements[0])
                    if value is not None:
                        out[name] = value
                    if extra is not None:
                        out[slot.extra] = extra
                    return
                values: list[Any] = []
                extras: list[Any] = []
                for i in range(len(elements)):
                    value, extra = self.primitive(slot, elements[i])
                    values.append(value)
                    extras.append(extra)
                if any(v is not None for v in values):
                    out[name] = values
                if any(x is not None for x in extras):
                    out[slot.extra] = extras
            elif kind == COMPLEX:
                table = slot.table
                assert table is not None
                if not many:
                    out[name] = self.complex(elements[0], table)
                    return
                items = []
                for i in range(len(elements)):
                    items.append(self.complex(elements[i], table))
                out[name] = items
            elif kind == RESOURCE:
                items = []
                for i in range(len(elements)):
                    items.append(self.contained(elements[i], name))
                out[name] = items if many else items[0]
            else:  # XHTML
                out[name] = xhtml(elements[0])
        except XmlParseError as exc:
            raise exc.within(f"{name}[{i}]" if many else name) from None

    def contained(self, el: Any, name: str) -> dict[str, Any]:
        """The one resource an element of type Resource holds."""
        if el.attrib:
            raise XmlParseError("this element takes no attributes")
        if not _blank(el.text):
            raise XmlParseError("text is not allowed here")
        inner = list(el)
        if len(inner) != 1:
            raise XmlParseError(f"<{name}> holds exactly one resource, not {len(inner)} "
                                "elements")
        if not _blank(inner[0].tail):
            raise XmlParseError("text is not allowed here")
        self.depth += 1
        resource = self.resource(inner[0], True)
        self.depth -= 1
        return resource

    def primitive(self, slot: Slot, el: Any) -> tuple[Any, Any]:
        value: Any = None
        ident: str | None = None
        for attr, text in el.attrib.items():
            if attr == "value":
                value = _typed(slot.value_kind, text)
            elif attr == "id":
                ident = text
            elif not attr.startswith(_XSI):
                raise XmlParseError(f"a primitive element has no attribute '{_show(attr)}'")
        extra: dict[str, Any] | None = None
        if ident is not None:
            extra = {"id": ident}
        if len(el):
            holder: dict[str, Any] = {}
            self.children(el, _primitive_children(), holder)
            if holder:
                extra = extra or {}
                extra.update(holder)
        elif not _blank(el.text):
            raise XmlParseError("text is not allowed here; the value goes in the value "
                                "attribute")
        if value is None and extra is None:
            raise XmlParseError("an element must have a value attribute, an id or "
                                "extensions (ele-1)")
        return value, extra

    def complex(self, el: Any, table: Table) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, text in el.attrib.items():
            if attr == "id" or (attr == "url" and table.is_extension):
                out[attr] = text
            elif attr == "value":
                raise XmlParseError("this element is not a primitive: it has no value "
                                    "attribute")
            elif not attr.startswith(_XSI):
                raise XmlParseError(f"this element has no attribute '{_show(attr)}'")
        self.children(el, table, out)
        if not out:
            raise XmlParseError("an element must have children or an id (ele-1)")
        return out


def _typed(kind: int, text: str) -> Any:
    """A value attribute as its JSON value (https://hl7.org/fhir/R4/json.html#primitive)."""
    if kind == V_BOOLEAN:
        if text == "true":
            return True
        if text == "false":
            return False
        raise XmlParseError(f"'{text}' is not a boolean (true or false)")
    if kind == V_INTEGER:
        if INTEGER_RE.fullmatch(text) is None:
            raise XmlParseError(f"'{text}' is not an integer")
        return int(text)
    if kind == V_DECIMAL:
        if DECIMAL_RE.fullmatch(text) is None:
            raise XmlParseError(f"'{text}' is not a decimal")
        return orjson.Fragment(text.encode("ascii"))  # the digits as written
    return text


_QUOTE_IN_TEXT = re.compile(r">[^<]*\"[^<]*<")


def xhtml(el: Any) -> str:
    """The narrative div as the JSON string (https://hl7.org/fhir/R4/narrative.html#xhtml):
    serialised with only the namespace declarations it uses, and `"` in text written as
    `&quot;` as the FHIR reference serialiser (which wrote the official examples) does."""
    if el.attrib.get("value") is not None and len(el) == 0 and _blank(el.text):
        raise XmlParseError("the narrative div is XHTML content, not a value attribute")
    if el.nsmap != {None: XHTML_NS}:
        el = copy.deepcopy(el)  # drops the ancestors' namespace declarations it does not use
        el.tail = None
    text = etree.tostring(el, encoding="unicode", with_tail=False)
    if '"' in text:
        text = _QUOTE_IN_TEXT.sub(lambda m: m.group().replace('"', "&quot;"), text)
    return text


_PRIMITIVE_CHILDREN: Table | None = None


def _primitive_children() -> Table:
    """What a primitive element may hold: extensions."""
    global _PRIMITIVE_CHILDREN
    if _PRIMITIVE_CHILDREN is None:
        ext = tables().resources["Basic"].slots["extension"]
        holder = Table("Element")
        holder.slots["extension"] = ext
        _PRIMITIVE_CHILDREN = holder
    return _PRIMITIVE_CHILDREN


def _local_name(tag: object) -> str:
    return str(tag).rpartition("}")[2]


def _show(tag: object) -> str:
    if type(tag) is not str:
        return str(tag)
    if tag.startswith(_FHIR):
        return tag[len(_FHIR):]
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return f"{local} (namespace {ns})"
    return tag


def parse(body: bytes) -> dict[str, Any]:
    """The resource of an XML body as a JSON-ready dict (decimals as `orjson.Fragment`)."""
    if not body.strip():
        raise XmlParseError("the body is empty; a resource is required")
    if b"\x00" in body[:4]:
        raise XmlParseError("FHIR XML is UTF-8 (https://hl7.org/fhir/R4/http.html#mime-type)"
                            "; UTF-16 and UTF-32 are not read")
    if b"<!DOCTYPE" in body:  # refused before parsing: no DTD, no entity is ever declared
        raise XmlParseError("a DOCTYPE is not allowed in FHIR XML (no DTDs, no entities)")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlParseError(f"the body is not well-formed XML: {exc}") from exc
    except ValueError as exc:  # e.g. a unicode string with an encoding declaration
        raise XmlParseError(f"the body cannot be parsed as XML: {exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise XmlParseError("a DOCTYPE is not allowed in FHIR XML (no DTDs, no entities)")
    return _Reader().resource(root, False)


def xml_to_json(body: bytes) -> bytes:
    """FHIR XML bytes as FHIR JSON bytes."""
    return json_numbers.dumps(parse(body))
