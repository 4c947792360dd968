"""Structure validation of R4 JSON resources against the official StructureDefinitions.

Checks the JSON representation (https://hl7.org/fhir/R4/json.html): known elements, cardinality,
primitive formats (https://hl7.org/fhir/R4/datatypes.html), choice types, contained resources and
required bindings (https://hl7.org/fhir/R4/terminologies.html#required). Invariants are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resources.structure import (
    CODE_TYPES,
    COMPLEX,
    FAST_COMPLEX,
    FAST_COMPLEX_ARRAY,
    FAST_PRIMITIVE,
    FAST_PRIMITIVE_ARRAY,
    PRIMITIVE,
    RESOURCE,
    XHTML,
    Binding,
    Element,
    Node,
    Registry,
    registry,
)
from resources.types import describe

__all__ = ["ValidationIssue", "validate_resource"]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem found; ``code`` is from https://hl7.org/fhir/R4/valueset-issue-type.html."""

    severity: str
    code: str
    diagnostics: str
    expression: str


def _error(issues: list[ValidationIssue], code: str, message: str, expression: str) -> None:
    issues.append(ValidationIssue("error", code, message, expression))


def validate_resource(resource: object) -> list[ValidationIssue]:
    """Validate one resource (a parsed JSON object); an empty list means it is valid."""
    issues: list[ValidationIssue] = []
    try:
        _Walker(registry(), issues).resource(resource, "")
    except RecursionError:
        message = "The resource is nested too deeply to be validated"
        return [ValidationIssue("error", "too-costly", message, "$this")]
    return issues


class _Walker:
    """Walks one resource's JSON tree, appending issues; paths are built as it descends."""

    __slots__ = ("reg", "issues", "element_node", "extension_node")

    def __init__(self, reg: Registry, issues: list[ValidationIssue]) -> None:
        self.reg = reg
        self.issues = issues
        self.element_node = reg.nodes["Element"]
        self.extension_node = reg.nodes["Extension"]

    def resource(self, value: object, path: str) -> None:
        """A whole resource: ``path`` is where it sits ("" at the top level)."""
        issues = self.issues
        where = path or "$this"
        if type(value) is not dict:
            _error(
                issues,
                "structure",
                f"A resource must be a JSON object, not {describe(value)}",
                where,
            )
            return
        rtype = value.get("resourceType")
        if rtype is None:
            _error(issues, "required", "The resource has no resourceType", where)
            return
        if type(rtype) is not str or rtype not in self.reg.resource_types:
            what = "Abstract" if rtype in self.reg.abstract_types else "Unknown"
            _error(issues, "not-supported", f"{what} resourceType {rtype!r}", where)
            return
        prefix = f"{path}.ofType({rtype})" if path else rtype
        self.props(value, self.reg.nodes[rtype], prefix)

    def props(self, obj: dict[str, Any], node: Node, path: str) -> None:
        """The properties of one JSON object against the Node describing it."""
        issues = self.issues
        elements = node.elements
        choices: dict[str, str] | None = None
        for key, value in obj.items():
            el = elements.get(key)
            if el is None:
                if key[:1] == "_":
                    self.primitive_extension(obj, key, value, node, path)
                elif not (key == "resourceType" and node.is_resource):
                    _error(issues, "structure", f"Unknown element '{key}'", f"{path}.{key}")
                continue
            if el.choice is not None:
                if choices is None:
                    choices = {}
                other = choices.setdefault(el.choice, key)
                if other != key:
                    _error(
                        issues,
                        "structure",
                        f"Only one of {other} and {key} is allowed ({el.path} is a choice)",
                        f"{path}.{el.choice}",
                    )
                    continue
            fast = el.fast
            if fast == FAST_PRIMITIVE:
                if value is not None and el.check(value) is None:
                    continue
            elif fast == FAST_COMPLEX:
                if type(value) is dict and value:
                    self.props(value, el.node, f"{path}.{key}")  # type: ignore[arg-type]
                    continue
            elif fast == FAST_COMPLEX_ARRAY:
                if type(value) is list and value:
                    sub = el.node
                    for i, item in enumerate(value):
                        if type(item) is dict and item:
                            self.props(item, sub, f"{path}.{key}[{i}]")  # type: ignore[arg-type]
                        else:
                            self.value(el, item, f"{path}.{key}[{i}]")
                    continue
            elif fast == FAST_PRIMITIVE_ARRAY:
                if type(value) is list and value:
                    check = el.check
                    for item in value:
                        if item is None or check(item) is not None:
                            break
                    else:
                        continue
            self.property(el, value, f"{path}.{key}", obj)
        for name, keys in node.required:
            for k in keys:
                if k in obj:
                    break
            else:
                _error(issues, "required", f"Missing required element '{name}'", f"{path}.{name}")
        if node.is_extension:
            self.extension(obj, path)

    def property(self, el: Element, value: object, path: str, obj: dict[str, Any]) -> None:
        """One property value: an array or a singleton as the cardinality says."""
        issues = self.issues
        if el.is_array:
            if type(value) is not list:
                _error(issues, "structure", f"Expected an array, not {describe(value)}", path)
                return
            if not value:
                _error(issues, "structure", "Empty arrays are not allowed", path)
                return
            if el.max is not None and len(value) > el.max:
                _error(
                    issues, "structure", f"At most {el.max} values allowed, got {len(value)}", path
                )
            for i, item in enumerate(value):
                if item is None and el.kind == PRIMITIVE and "_" + el.name in obj:
                    continue  # aligned with a value in the _name array (checked there)
                self.value(el, item, f"{path}[{i}]")
        elif type(value) is list:
            _error(issues, "structure", "Expected a single value, not an array", path)
        elif el.max == 0:
            _error(issues, "structure", "This element is not allowed", path)
        else:
            self.value(el, value, path)

    def value(self, el: Element, value: object, path: str) -> None:
        """One value of an element, by the element's kind."""
        kind = el.kind
        if kind == PRIMITIVE:
            if value is None:
                _error(self.issues, "structure", "null is not allowed here", path)
                return
            msg = el.check(value)
            if msg is not None:
                _error(self.issues, "value", f"Invalid {el.type}: {msg}", path)
            elif el.binding is not None and el.type in CODE_TYPES:
                if value not in el.binding.codes:
                    self.bad_code(el.binding, repr(value), path)
        elif kind == COMPLEX:
            if type(value) is not dict:
                _error(self.issues, "structure", f"Expected an object, not {describe(value)}", path)
                return
            if not value:
                _error(self.issues, "structure", "Empty objects are not allowed", path)
                return
            node = el.node
            assert node is not None
            self.props(value, node, path)
            if el.binding is not None:
                self.coded(el, value, path)
        elif kind == RESOURCE:
            self.resource(value, path)
        elif kind == XHTML:
            msg = el.check(value)
            if msg is not None:
                _error(self.issues, "value", msg, path)

    def coded(self, el: Element, value: dict[str, Any], path: str) -> None:
        """A Coding or CodeableConcept under a required binding: a coding must be in the set."""
        binding = el.binding
        assert binding is not None
        if el.type == "Coding":
            codings: list[Any] = [value]
        elif el.type == "CodeableConcept":
            codings = value.get("coding") or []
            if type(codings) is not list:
                return
        else:
            return
        found: list[str] = []
        for coding in codings:
            if type(coding) is not dict or type(coding.get("code")) is not str:
                continue
            code, system = coding["code"], coding.get("system")
            if (system, code) in binding.pairs or (system is None and code in binding.codes):
                return
            found.append(f"{system}|{code}" if system else code)
        self.bad_code(binding, ", ".join(found) or "No code", path)

    def bad_code(self, binding: Binding, shown: str, path: str) -> None:
        _error(
            self.issues,
            "code-invalid",
            f"{shown} is not in the required value set {binding.url}",
            path,
        )

    def primitive_extension(
        self, obj: dict[str, Any], key: str, value: object, node: Node, path: str
    ) -> None:
        """``_name``: the id/extensions of a primitive (https://hl7.org/fhir/R4/json.html#primitive)."""
        issues = self.issues
        name = key[1:]
        el = node.elements.get(name)
        if el is None or el.kind != PRIMITIVE:
            _error(issues, "structure", f"Unknown element '{key}'", f"{path}.{key}")
            return
        where = f"{path}.{name}"
        if not el.is_array:
            if type(value) is list:
                _error(issues, "structure", "Expected a single value, not an array", where)
            else:
                self.element_value(value, where)
            return
        if type(value) is not list:
            _error(issues, "structure", f"Expected an array, not {describe(value)}", where)
            return
        if not value:
            _error(issues, "structure", "Empty arrays are not allowed", where)
            return
        values = obj.get(name)
        if values is not None:
            if type(values) is not list or len(values) != len(value):
                _error(issues, "structure", f"'{key}' and '{name}' arrays differ in length", where)
                return
        for i, item in enumerate(value):
            if item is None:
                if values is None or values[i] is None:
                    _error(issues, "structure", "null is not allowed here", f"{where}[{i}]")
                continue
            self.element_value(item, f"{where}[{i}]")

    def element_value(self, value: object, path: str) -> None:
        """The object holding a primitive's id and extensions."""
        if type(value) is not dict:
            _error(self.issues, "structure", f"Expected an object, not {describe(value)}", path)
        elif not value:
            _error(self.issues, "structure", "Empty objects are not allowed", path)
        else:
            self.props(value, self.element_node, path)

    def extension(self, obj: dict[str, Any], path: str) -> None:
        """ext-1: value[x] or nested extensions, not both (https://hl7.org/fhir/R4/extensibility.html)."""
        has_value = any(k.startswith(("value", "_value")) for k in obj)
        has_nested = "extension" in obj
        if has_value == has_nested:
            what = "both value[x] and extension" if has_value else "neither value[x] nor extension"
            _error(
                self.issues,
                "invariant",
                f"ext-1: an extension must have either extensions or value[x], not {what}",
                path,
            )
