"""Per-type tables for the XML format (https://hl7.org/fhir/R4/xml.html), compiled once per
process from the R4 element trees of `resources.structure`.

In XML, elements appear in the order of their definition, a primitive's value is its `value`
attribute, `Element.id` and `Extension.url` are attributes, and a resource's type is the name of
its element in the FHIR namespace. Each `Table` holds, for one datatype, resource or backbone
element, what the two converters (`resources.json_to_xml`, `resources.xml_to_json`) need about
each of its elements, looked up by name in one dict probe.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from resources.structure import COMPLEX, PRIMITIVE, RESOURCE, XHTML, Node, registry

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

# How a primitive's XML value attribute becomes its JSON value (https://hl7.org/fhir/R4/json.html#primitive)
V_STRING = 0
V_BOOLEAN = 1
V_INTEGER = 2
V_DECIMAL = 3

_VALUE_KINDS = {
    "boolean": V_BOOLEAN,
    "integer": V_INTEGER,
    "positiveInt": V_INTEGER,
    "unsignedInt": V_INTEGER,
    "decimal": V_DECIMAL,
}

# The lexical forms of the R4 numeric and boolean types (https://hl7.org/fhir/R4/datatypes.html)
INTEGER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
DECIMAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(slots=True, eq=False)
class Slot:
    """One element of a Table (a choice element has one Slot per type, sharing `order`)."""

    name: str  # the element's name in JSON and XML (choices typed: valueQuantity)
    order: int  # position in the definition
    kind: int  # structure.PRIMITIVE, COMPLEX, RESOURCE or XHTML
    is_array: bool
    value_kind: int = V_STRING  # for primitives
    table: Table | None = None  # for complex elements
    extra: str = ""  # "_name": the JSON key of a primitive's id and extensions
    open_tag: str = ""  # "<name"
    close_tag: str = ""  # "</name>"


@dataclass(slots=True, eq=False)
class Table:
    """The XML view of one Node: its elements by name, and which JSON keys are attributes."""

    name: str  # type name, or backbone path ("Observation.component")
    slots: dict[str, Slot] = field(default_factory=dict)  # by element name
    # JSON key -> Slot for every key an object of this type may carry ("_name" included);
    # attribute keys ("id" of elements, "url" of Extension) map to None
    keys: dict[str, Slot | None] = field(default_factory=dict)
    is_resource: bool = False
    is_extension: bool = False


@dataclass(slots=True)
class Tables:
    """Every Table: resources by type name, plus the Extension table."""

    resources: dict[str, Table]
    by_node: dict[int, Table]


def _kind_of_value(type_name: str) -> int:
    return _VALUE_KINDS.get(type_name, V_STRING)


class _Builder:
    def __init__(self) -> None:
        self.by_node: dict[int, Table] = {}

    def table(self, node: Node) -> Table:
        found = self.by_node.get(id(node))
        if found is not None:
            return found
        tab = Table(node.name, is_resource=node.is_resource, is_extension=node.is_extension)
        self.by_node[id(node)] = tab
        orders: dict[str, int] = {}
        for name, el in node.elements.items():
            if not node.is_resource and name == "id":
                tab.keys["id"] = None  # Element.id: an XML attribute
                continue
            if node.is_extension and name == "url":
                tab.keys["url"] = None  # Extension.url: an XML attribute
                continue
            order = orders.setdefault(el.path, len(orders))
            slot = Slot(name, order, el.kind, el.is_array,
                        open_tag="<" + name, close_tag="</" + name + ">")
            if el.kind == PRIMITIVE:
                slot.value_kind = _kind_of_value(el.type)
                slot.extra = "_" + name
                tab.keys[slot.extra] = slot
            elif el.kind == COMPLEX:
                assert el.node is not None
                slot.table = self.table(el.node)
            tab.slots[name] = slot
            tab.keys[name] = slot
        if node.is_resource:
            tab.keys["resourceType"] = None
        return tab


_lock = threading.Lock()
_tables: Tables | None = None


def tables() -> Tables:
    """The compiled tables, built lazily once per process (thread-safe)."""
    global _tables
    got = _tables
    if got is None:
        with _lock:
            if _tables is None:
                reg = registry()
                builder = _Builder()
                resources = {
                    name: builder.table(reg.nodes[name]) for name in sorted(reg.resource_types)
                }
                _tables = Tables(resources, builder.by_node)
            got = _tables
    return got


__all__ = [
    "COMPLEX", "DECIMAL_RE", "FHIR_NS", "INTEGER_RE", "PRIMITIVE", "RESOURCE", "XHTML",
    "XHTML_NS", "Slot", "Table", "Tables", "V_BOOLEAN", "V_DECIMAL", "V_INTEGER", "V_STRING",
    "tables",
]
