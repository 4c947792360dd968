"""JSON -> XML for R4 resources (https://hl7.org/fhir/R4/xml.html, from the JSON of
https://hl7.org/fhir/R4/json.html), driven by the per-type tables of `resources.xml_tables`.

Elements are written in definition order whatever the JSON key order; primitives as `value`
attributes with their `_name` id and extensions; `Element.id` and `Extension.url` as attributes;
resources inside `contained`, `Bundle.entry.resource` and `Parameters.parameter.resource` as
elements named by their type; the narrative div as it is written in the JSON (it must be
well-formed XHTML; a div without the XHTML namespace declaration gets it). Decimals keep the
digits of the JSON text (`loads` keeps each JSON number as written).

The writer builds a list of strings: no tree, one join, because this runs on every XML read.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from resources import json_numbers
from resources.narrative import narrative_xml
from resources.types import describe
from resources.xml_tables import (
    COMPLEX,
    FHIR_NS,
    PRIMITIVE,
    RESOURCE,
    Slot,
    Table,
    tables,
)


class XmlRenderError(ValueError):
    """The JSON cannot be written as FHIR XML: an unknown element, a wrong JSON type, a
    narrative that is not well-formed XHTML, or a character XML 1.0 cannot carry. `path` names
    the element (FHIRPath-like); it is built as the error travels up, so writing costs nothing
    for it."""

    def __init__(self, message: str, *segments: str) -> None:
        super().__init__(message)
        self.message = message
        self.segments = list(segments)  # innermost first

    def within(self, segment: str) -> XmlRenderError:
        self.segments.append(segment)
        return self

    @property
    def path(self) -> str:
        return ".".join(reversed(self.segments))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.segments else self.message


class Number(str):
    """A JSON number as written in the JSON text (so 1.50 stays 1.50 in XML)."""

    __slots__ = ()


_DECODER = json.JSONDecoder(parse_float=Number)


def loads(raw: bytes | str) -> Any:
    """Parse JSON (UTF-8 bytes, as stored) keeping each non-integer number's text (a
    `Number`)."""
    return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


# Characters an XML attribute must escape, and those XML 1.0 cannot hold at all
# (https://www.w3.org/TR/xml/#charsets); attribute-value normalisation would turn a raw
# tab or line break into a space, so they are written as character references.
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ATTR_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "\t": "&#9;", "\n": "&#10;", "\r": "&#13;",
})


def _attr(value: str) -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise XmlRenderError(
            f"character U+{ord(bad.group()):04X} cannot be represented in XML 1.0")
    return value.translate(_ATTR_ESCAPES)


def _value(value: object) -> str:
    kind = type(value)
    if kind is str:
        return _attr(value)  # type: ignore[arg-type]
    if kind is Number:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is json_numbers.DecimalText:
        return value.text  # type: ignore[attr-defined]
    if kind is float:
        return json_numbers.dumps(value).decode()  # the text a JSON client is given
    raise XmlRenderError(f"a primitive value cannot be {describe(value)}")


_INDENTS = ["\n" + "  " * depth for depth in range(64)]


def _indent(pretty: bool, depth: int) -> str:
    if not pretty:
        return ""
    return _INDENTS[depth] if depth < len(_INDENTS) else "\n" + "  " * depth


class _Writer:
    """Writes one resource tree to a list of strings (the hot path of every XML read: one
    pass over the JSON keys, which are usually already in definition order)."""

    __slots__ = ("out", "pretty")

    def __init__(self, pretty: bool) -> None:
        self.out: list[str] = []
        self.pretty = pretty

    def resource(self, obj: object, depth: int, root: bool) -> None:
        if type(obj) is not dict:
            raise XmlRenderError("a resource must be a JSON object")
        rtype = obj.get("resourceType")
        table = tables().resources.get(rtype) if type(rtype) is str else None
        if table is None or type(rtype) is not str:
            raise XmlRenderError(f"unknown resourceType {rtype!r}")
        out = self.out
        if not root:
            out.append(f"{_indent(self.pretty, depth)}<{rtype}>")
        else:
            out.append(f'<{rtype} xmlns="{FHIR_NS}">')
        try:
            self.children(obj, table, depth + 1)
        except XmlRenderError as exc:
            raise exc.within(rtype) from None
        out.append(f"{_indent(self.pretty, depth)}</{rtype}>")

    def children(self, obj: dict[str, Any], table: Table, depth: int) -> None:
        """The child elements of `obj`, in definition order."""
        keys = table.keys
        out = self.out
        start = len(out)
        last = -1
        prev = None
        indent = _indent(self.pretty, depth)
        for key in obj:
            slot = keys.get(key, _UNKNOWN)
            if slot is None or slot is prev:
                continue  # an attribute or resourceType; `_name` after `name`
            if slot is _UNKNOWN:
                raise XmlRenderError(f"unknown element '{key}'", key)
            if slot.order < last:  # keys out of definition order: start again, sorted
                del out[start:]
                self.sorted_children(obj, table, depth)
                return
            last = slot.order
            prev = slot
            self.slot(slot, obj, indent, depth)

    def sorted_children(self, obj: dict[str, Any], table: Table, depth: int) -> None:
        keys = table.keys
        found: dict[int, Slot] = {}
        for key in obj:
            slot = keys.get(key, _UNKNOWN)
            if slot is _UNKNOWN:
                raise XmlRenderError(f"unknown element '{key}'", key)
            if slot is not None:
                found[id(slot)] = slot
        indent = _indent(self.pretty, depth)
        for slot in sorted(found.values(), key=_order):
            self.slot(slot, obj, indent, depth)

    def slot(self, slot: Slot, obj: dict[str, Any], indent: str, depth: int) -> None:
        """Every occurrence of one element of `obj`."""
        name = slot.name
        value = obj.get(name)
        kind = slot.kind
        i = 0
        try:
            if kind == PRIMITIVE:
                extra = obj.get(slot.extra)
                if not slot.is_array:
                    if extra is None and type(value) is str:  # the common case, inline
                        if _ATTR_SPECIAL.search(value) is not None:
                            value = _attr(value)
                        self.out.append(f'{indent}{slot.open_tag} value="{value}"/>')
                    else:
                        self.primitive(slot, value, extra, indent, depth)
                    return
                values = value if value is not None else []
                extras = extra if extra is not None else []
                if type(values) is not list or type(extras) is not list:
                    raise XmlRenderError("an array is expected")
                for i in range(max(len(values), len(extras))):
                    self.primitive(slot, values[i] if i < len(values) else None,
                                   extras[i] if i < len(extras) else None, indent, depth)
            elif kind == COMPLEX:
                sub = slot.table
                assert sub is not None
                if not slot.is_array:
                    self.complex(slot, value, sub, indent, depth)
                    return
                if type(value) is not list:
                    raise XmlRenderError("an array is expected")
                for i in range(len(value)):
                    self.complex(slot, value[i], sub, indent, depth)
            elif kind == RESOURCE:
                items = value if slot.is_array else [value]
                if type(items) is not list:
                    raise XmlRenderError("an array is expected")
                out = self.out
                for i in range(len(items)):
                    out.append(f"{indent}{slot.open_tag}>")
                    self.resource(items[i], depth + 1, False)
                    out.append(indent + slot.close_tag)
            else:  # XHTML
                if type(value) is not str:
                    raise XmlRenderError("the narrative div must be a string")
                try:
                    self.out.append(indent + narrative_xml(value))
                except ValueError as exc:
                    raise XmlRenderError(str(exc)) from exc
        except XmlRenderError as exc:
            raise exc.within(f"{name}[{i}]" if slot.is_array else name) from None

    def primitive(self, slot: Slot, value: object, extra: object, indent: str,
                  depth: int) -> None:
        out = self.out
        if extra is None:
            if value is not None:
                out.append(f'{indent}{slot.open_tag} value="{_value(value)}"/>')
            return
        if type(extra) is not dict:
            raise XmlRenderError("a primitive's id and extensions must be an object")
        tag = indent + slot.open_tag
        ident = extra.get("id")
        if ident is not None:
            tag += f' id="{_value(ident)}"'
        if value is not None:
            tag += f' value="{_value(value)}"'
        for key in extra:
            if key not in ("id", "extension"):
                raise XmlRenderError(f"unknown element '{key}' of a primitive")
        ext = extra.get("extension")
        if not ext:
            out.append(tag + "/>")
            return
        out.append(tag + ">")
        self.children({"extension": ext}, _extension_holder(), depth + 1)
        out.append(indent + slot.close_tag)

    def complex(self, slot: Slot, obj: object, table: Table, indent: str, depth: int) -> None:
        if type(obj) is not dict:
            raise XmlRenderError(f"an object is expected, not {describe(obj)}")
        tag = indent + slot.open_tag
        ident = obj.get("id")
        if ident is not None:
            tag += f' id="{_value(ident)}"'
        if table.is_extension:
            url = obj.get("url")
            if url is not None:
                tag += f' url="{_value(url)}"'
        out = self.out
        at = len(out)
        out.append(tag + ">")
        self.children(obj, table, depth + 1)
        if len(out) == at + 1:
            out[at] = tag + "/>"
        else:
            out.append(indent + slot.close_tag)


_UNKNOWN = Slot("", -1, -1, False)  # what `Table.keys` gives for a key it does not know


def _order(slot: Slot) -> int:
    return slot.order


@lru_cache(maxsize=1)
def _extension_holder() -> Table:
    """A table with just `extension` (as every element has): a primitive's extensions."""
    ext = tables().resources["Basic"].keys["extension"]
    assert ext is not None
    holder = Table("Element")
    holder.slots["extension"] = ext
    holder.keys["extension"] = ext
    return holder


def to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """A resource (parsed by `loads`, or any JSON-able dict) as a FHIR XML document."""
    writer = _Writer(pretty)
    writer.out.append('<?xml version="1.0" encoding="UTF-8"?>' + ("\n" if pretty else ""))
    writer.resource(resource, 0, True)
    return "".join(writer.out).encode("utf-8")


def json_to_xml(raw: bytes, pretty: bool = False) -> bytes:
    """FHIR JSON bytes as FHIR XML bytes."""
    return to_xml(loads(raw), pretty)
