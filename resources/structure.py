"""The R4 element trees, compiled once per process into lookup dicts for fast validation.

Built from the generated ``data/structures.json.gz`` (StructureDefinition snapshots,
https://hl7.org/fhir/R4/structuredefinition.html) and ``data/valuesets-required.json.gz``.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from resources.types import PRIMITIVE_CHECKERS, Checker, check_xhtml

DATA_DIR = Path(__file__).resolve().parent / "data"

# Element kinds (https://hl7.org/fhir/R4/datatypes.html, https://hl7.org/fhir/R4/references.html)
PRIMITIVE = 0
COMPLEX = 1  # a datatype or an inline BackboneElement: a JSON object walked by its Node
RESOURCE = 2  # an element typed Resource: a JSON object validated by its own resourceType
XHTML = 3  # Narrative.div (https://hl7.org/fhir/R4/narrative.html#xhtml)

# Shortcuts for the common, valid case (no binding, unbounded arrays or singletons)
FAST_NONE = 0
FAST_PRIMITIVE = 1
FAST_COMPLEX = 2
FAST_PRIMITIVE_ARRAY = 3
FAST_COMPLEX_ARRAY = 4

# Types whose values can be checked against a required binding (https://hl7.org/fhir/R4/terminologies.html)
CODE_TYPES = frozenset({"code", "string", "uri"})


def _no_check(value: object) -> str | None:
    """The format check of non-primitive elements (their structure is checked instead)."""
    return None


@dataclass(frozen=True, slots=True)
class Binding:
    """An enumerable required value set: its codes, and its (system, code) pairs."""

    url: str
    codes: frozenset[str]
    pairs: frozenset[tuple[str, str]]


@dataclass(slots=True, eq=False)
class Element:
    """One JSON property of a Node (choice elements are expanded: one Element per typed name)."""

    name: str
    path: str  # the definition path, e.g. "Observation.value[x]"
    type: str
    kind: int
    min: int
    max: int | None  # None: unbounded
    is_array: bool
    choice: str | None = None  # the choice base name ("value") for value[x] elements
    binding: Binding | None = None
    node: Node | None = None  # for COMPLEX elements
    fast: int = 0  # FAST_* shortcut the validator may take, set when compiled
    check: Checker = _no_check  # the format check of PRIMITIVE and XHTML values


@dataclass(slots=True, eq=False)
class Node:
    """A datatype, resource or backbone element: its allowed JSON properties and required ones."""

    name: str
    elements: dict[str, Element] = field(default_factory=dict)
    # (FHIRPath name, JSON keys any of which satisfies the element) for every min >= 1 element
    required: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    is_resource: bool = False
    is_extension: bool = False


@dataclass(slots=True)
class Registry:
    """Every compiled Node by type name, plus the type lists from the definitions."""

    fhir_version: str
    resource_types: frozenset[str]
    abstract_types: frozenset[str]
    primitive_types: frozenset[str]
    complex_types: frozenset[str]
    nodes: dict[str, Node]
    not_checkable: dict[str, str]


def _read(name: str) -> Any:
    return orjson.loads(gzip.decompress((DATA_DIR / name).read_bytes()))


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


class _Compiler:
    """Links the generated element lists into Nodes, resolving datatypes and contentReference."""

    def __init__(self, data: Any, valuesets: Any) -> None:
        self.structures: dict[str, Any] = data["structures"]
        self.primitives = frozenset(data["primitiveTypes"])
        self.valuesets: dict[str, dict[str, list[str]]] = valuesets["valueSets"]
        self.bindings: dict[str, Binding] = {}
        self.nodes: dict[str, Node] = {}  # by type name
        self.paths: dict[str, Node] = {}  # backbone nodes by definition path
        self.pending: list[tuple[Element, str]] = []  # (element, type name or backbone path)

    def binding(self, url: str | None) -> Binding | None:
        if url is None or url not in self.valuesets:
            return None
        if url not in self.bindings:
            by_system = self.valuesets[url]
            pairs = frozenset((s, c) for s, codes in by_system.items() for c in codes)
            self.bindings[url] = Binding(url, frozenset(c for _, c in pairs), pairs)
        return self.bindings[url]

    def compile_type(self, type_name: str) -> Node:
        struct = self.structures[type_name]
        root = Node(
            type_name,
            is_resource=struct["kind"] == "resource",
            is_extension=type_name == "Extension",
        )
        self.nodes[type_name] = root
        self.paths[type_name] = root
        for entry in struct["elements"]:
            parent_path, _, name = entry["path"].rpartition(".")
            parent = self.paths[parent_path]
            self.add_element(parent, name, entry)
        return root

    def add_element(self, parent: Node, name: str, entry: dict[str, Any]) -> None:
        path: str = entry["path"]
        lo, hi = int(entry["min"]), _max(entry["max"])
        is_array = entry["max"] != "1"
        binding = self.binding(entry.get("binding"))
        if "contentReference" in entry:
            el = Element(name, path, "BackboneElement", COMPLEX, lo, hi, is_array)
            self.pending.append((el, entry["contentReference"]))
            parent.elements[name] = el
            keys: tuple[str, ...] = (name,)
        elif "choices" in entry:
            base = name[:-3]
            keys = ()
            for json_name, type_name in entry["choices"].items():
                el = self.make(json_name, path, type_name, lo, hi, is_array, binding)
                el.choice = base
                parent.elements[json_name] = el
                keys += (json_name, "_" + json_name) if el.kind == PRIMITIVE else (json_name,)
            name = base
        else:
            (type_name,) = entry["types"]
            el = self.make(name, path, type_name, lo, hi, is_array, binding)
            parent.elements[name] = el
            if type_name == "BackboneElement":
                self.paths[path] = el.node = Node(path)
            keys = (name, "_" + name) if el.kind == PRIMITIVE else (name,)
        if lo >= 1:
            parent.required.append((name, keys))

    def make(
        self,
        name: str,
        path: str,
        type_name: str,
        lo: int,
        hi: int | None,
        is_array: bool,
        binding: Binding | None,
    ) -> Element:
        if type_name in self.primitives:
            kind = XHTML if type_name == "xhtml" else PRIMITIVE
        elif type_name == "Resource":
            kind = RESOURCE
        else:
            kind = COMPLEX
        el = Element(name, path, type_name, kind, lo, hi, is_array, binding=binding)
        if kind == PRIMITIVE:
            el.check = PRIMITIVE_CHECKERS[type_name]
        elif kind == XHTML:
            el.check = check_xhtml
        if kind == COMPLEX and type_name != "BackboneElement":
            self.pending.append((el, type_name))
        return el

    def link(self) -> None:
        for el, target in self.pending:
            el.node = self.paths[target] if "." in target else self.nodes[target]
        for node in self.paths.values():
            for el in node.elements.values():
                el.fast = _fast(el)


def _fast(el: Element) -> int:
    """The shortcut the validator may take for this element's values."""
    if el.binding is not None or el.max == 0 or (el.is_array and el.max is not None):
        return FAST_NONE
    if el.kind == PRIMITIVE:
        return FAST_PRIMITIVE_ARRAY if el.is_array else FAST_PRIMITIVE
    if el.kind == COMPLEX:
        return FAST_COMPLEX_ARRAY if el.is_array else FAST_COMPLEX
    return FAST_NONE


def _compile() -> Registry:
    data = _read("structures.json.gz")
    valuesets = _read("valuesets-required.json.gz")
    compiler = _Compiler(data, valuesets)
    for type_name in data["structures"]:
        compiler.compile_type(type_name)
    compiler.link()
    return Registry(
        fhir_version=data["fhirVersion"],
        resource_types=frozenset(data["resourceTypes"]),
        abstract_types=frozenset(data["abstractTypes"]),
        primitive_types=compiler.primitives,
        complex_types=frozenset(data["complexTypes"]),
        nodes=compiler.nodes,
        not_checkable=dict(valuesets["notCheckable"]),
    )


_lock = threading.Lock()
_registry: Registry | None = None


def registry() -> Registry:
    """The compiled structures, loaded lazily once per process (thread-safe)."""
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                _registry = _compile()
            reg = _registry
    return reg
