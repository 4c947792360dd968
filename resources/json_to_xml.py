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

import orjson
from lxml import etree

from resources.xml_tables import (
    COMPLEX,
    FHIR_NS,
    PRIMITIVE,
    RESOURCE,
    XHTML_NS,
    Slot,
    Table,
    tables,
)


class XmlRenderError(ValueError):
    """The JSON cannot be written as FHIR XML: an unknown element, a wrong JSON type, a
    narrative that is not well-formed XHTML, or a character XML 1.0 cannot carry."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class Number(str):
    """A JSON number as written in the JSON text (so 1.50 stays 1.50 in XML)."""

    __slots__ = ()


def loads(raw: bytes | str) -> Any:
    """Parse JSON keeping each non-integer number's text (a `Number`)."""
    return json.loads(raw, parse_float=Number)


# Characters an XML attribute must escape, and those XML 1.0 cannot hold at all
# (https://www.w3.org/TR/xml/#charsets); attribute-value normalisation would turn a raw
# tab or line break into a space, so they are written as character references.
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ATTR_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "\t": "&#9;", "\n": "&#10;", "\r": "&#13;",
})

_DIV_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
    remove_comments=False, remove_pis=False,
)
_DIV_START = re.compile(r"\s*<div(?=[\s/>])")


def _attr(value: str, path: str) -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise XmlRenderError(
            f"character U+{ord(bad.group()):04X} cannot be represented in XML 1.0", path
        )
    return value.translate(_ATTR_ESCAPES)


def _value(value: object, path: str) -> str:
    kind = type(value)
    if kind is str:
        return _attr(value, path)  # type: ignore[arg-type]
    if kind is Number:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return orjson.dumps(value).decode()  # the text a JSON client is given
    raise XmlRenderError(f"a primitive value cannot be {type(value).__name__}", path)


@lru_cache(maxsize=2048)
def narrative(div: str) -> str:
    """The narrative div as XML to embed: the JSON string itself when it is a well-formed
    XHTML div (https://hl7.org/fhir/R4/narrative.html#xhtml); a div without the XHTML
    namespace declaration gets one. ValueError when it is not well-formed XML."""
    if _DIV_START.match(div) is None:
        raise ValueError("the narrative must be an XHTML <div> element")
    if "<!" in div and re.search(r"<!(?:DOCTYPE|ENTITY)", div):
        raise ValueError("the narrative may not declare a DOCTYPE or entities")
    try:
        root = etree.fromstring(div.encode("utf-8"), _DIV_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the narrative is not well-formed XHTML: {exc}") from exc
    if root.tag == "{" + XHTML_NS + "}div":
        return div.strip()
    if root.tag == "div" and root.prefix is None:
        # no namespace anywhere in it: declare XHTML as the default on the div
        fixed = _DIV_START.sub(f'<div xmlns="{XHTML_NS}"', div.strip(), count=1)
        return fixed
    raise ValueError(f"the narrative root must be an XHTML div, not {root.tag}")


class _Writer:
    """Writes one resource tree to a list of strings."""

    __slots__ = ("out", "pretty")

    def __init__(self, pretty: bool) -> None:
        self.out: list[str] = []
        self.pretty = pretty

    def resource(self, obj: object, path: str, depth: int, root: bool) -> None:
        if type(obj) is not dict:
            raise XmlRenderError("a resource must be a JSON object", path)
        rtype = obj.get("resourceType")
        table = tables().resources.get(rtype) if type(rtype) is str else None
        if table is None or type(rtype) is not str:
            raise XmlRenderError(f"unknown resourceType {rtype!r}", path)
        out = self.out
        if self.pretty and not root:
            out.append("\n" + "  " * depth)
        out.append(f'<{rtype} xmlns="{FHIR_NS}">' if root else f"<{rtype}>")
        self.children(obj, table, path or rtype, depth + 1)
        if self.pretty:
            out.append("\n" + "  " * depth)
        out.append(f"</{rtype}>")

    def children(self, obj: dict[str, Any], table: Table, path: str, depth: int) -> None:
        """The child elements of `obj`, in definition order."""
        keys = table.keys
        slots: list[Slot] = []
        last = -1
        in_order = True
        for key in obj:
            found = keys.get(key, _UNKNOWN)
            if found is None:
                continue  # an attribute, or resourceType
            if found is _UNKNOWN:
                raise XmlRenderError(f"unknown element '{key}'", path)
            if slots and slots[-1] is found:
                continue  # name then _name
            if found.order < last:
                in_order = False
            last = found.order
            slots.append(found)
        if not in_order:  # (a name and its _name apart are out of order too)
            slots = sorted({id(s): s for s in slots}.values(), key=_order)
        out = self.out
        pretty = self.pretty
        indent = "\n" + "  " * depth if pretty else ""
        for slot in slots:
            name = slot.name
            kind = slot.kind
            value = obj.get(name)
            if kind == PRIMITIVE:
                extra = obj.get(slot.extra)
                if slot.is_array:
                    values = value if value is not None else []
                    extras = extra if extra is not None else []
                    if type(values) is not list or type(extras) is not list:
                        raise XmlRenderError("an array is expected", f"{path}.{name}")
                    for i in range(max(len(values), len(extras))):
                        v = values[i] if i < len(values) else None
                        x = extras[i] if i < len(extras) else None
                        self.primitive(slot.open_tag, slot.close_tag, v, x,
                                       f"{path}.{name}[{i}]", indent, depth)
                else:
                    self.primitive(slot.open_tag, slot.close_tag, value, extra,
                                   f"{path}.{name}", indent, depth)
            elif kind == COMPLEX:
                sub = slot.table
                assert sub is not None
                if slot.is_array:
                    if type(value) is not list:
                        raise XmlRenderError("an array is expected", f"{path}.{name}")
                    for i, item in enumerate(value):
                        self.complex(slot.open_tag, slot.close_tag, item, sub,
                                     f"{path}.{name}[{i}]", indent, depth)
                else:
                    self.complex(slot.open_tag, slot.close_tag, value, sub, f"{path}.{name}",
                                 indent, depth)
            elif kind == RESOURCE:
                items = value if slot.is_array else [value]
                if type(items) is not list:
                    raise XmlRenderError("an array is expected", f"{path}.{name}")
                for i, item in enumerate(items):
                    where = f"{path}.{name}[{i}]" if slot.is_array else f"{path}.{name}"
                    out.append(indent + slot.open_tag + ">")
                    self.resource(item, where, depth + 1, False)
                    out.append(indent + slot.close_tag)
            else:  # XHTML
                if type(value) is not str:
                    raise XmlRenderError("the narrative div must be a string", f"{path}.div")
                try:
                    out.append(indent + narrative(value))
                except ValueError as exc:
                    raise XmlRenderError(str(exc), f"{path}.div") from exc

    def primitive(self, open_tag: str, close_tag: str, value: object, extra: object,
                  path: str, indent: str, depth: int) -> None:
        out = self.out
        if extra is None:
            if value is None:
                return
            out.append(f'{indent}{open_tag} value="{_value(value, path)}"/>')
            return
        if type(extra) is not dict:
            raise XmlRenderError("a primitive's id and extensions must be an object", path)
        tag = indent + open_tag
        ident = extra.get("id")
        if ident is not None:
            tag += f' id="{_value(ident, path + ".id")}"'
        if value is not None:
            tag += f' value="{_value(value, path)}"'
        ext = extra.get("extension")
        for key in extra:
            if key not in ("id", "extension"):
                raise XmlRenderError(f"unknown element '{key}' of a primitive", path)
        if not ext:
            out.append(tag + "/>")
            return
        out.append(tag + ">")
        self.children({"extension": ext}, _extension_holder(), path, depth + 1)
        out.append(indent + close_tag)

    def complex(self, open_tag: str, close_tag: str, obj: object, table: Table, path: str,
                indent: str, depth: int) -> None:
        if type(obj) is not dict:
            raise XmlRenderError("an object is expected", path)
        tag = indent + open_tag
        ident = obj.get("id")
        if ident is not None:
            tag += f' id="{_value(ident, path + ".id")}"'
        if table.is_extension:
            url = obj.get("url")
            if url is not None:
                tag += f' url="{_value(url, path + ".url")}"'
        out = self.out
        at = len(out)
        out.append(tag + ">")
        self.children(obj, table, path, depth + 1)
        if len(out) == at + 1:
            out[at] = tag + "/>"
        else:
            out.append(indent + close_tag)


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
    writer.resource(resource, "", 0, True)
    return "".join(writer.out).encode("utf-8")


def json_to_xml(raw: bytes, pretty: bool = False) -> bytes:
    """FHIR JSON bytes as FHIR XML bytes."""
    return to_xml(loads(raw), pretty)
