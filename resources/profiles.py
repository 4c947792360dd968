"""Validation against StructureDefinition profiles: the core resource definitions' invariants and
the constraint profiles the R4 spec publishes (vital signs, lipids, genetics, shareable
definitions...; https://hl7.org/fhir/R4/profiling.html, https://hl7.org/fhir/R4/profilelist.html).

A profile's snapshot (``data/profiles.json.gz``, made by ``python -m resources.build_profiles``)
is compiled once into a tree of element rules: cardinality, fixed[x] and pattern[x] values,
required bindings, type restrictions on choices, slicing by value/pattern/type/exists
discriminators (https://hl7.org/fhir/R4/profiling.html#slicing) and invariants in FHIRPath
(https://hl7.org/fhir/R4/conformance-rules.html#constraints), evaluated with fhirpathpy. The
structure rules of the base resource are resources.validation's; this adds what a profile says
beyond them. mustSupport is not a validation rule and is ignored, and so are best-practice
invariants (guidance such as dom-6) and the invariants of data types (ele-1, ext-1, per-1...),
which the resource snapshots do not carry.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse

from resources.fhirpath_lock import FHIRPATH_LOCK
from resources.terminology import value_set_expansion
from resources.types import PRIMITIVE_CHECKERS
from resources.validation import ValidationIssue

DATA_FILE = Path(__file__).resolve().parent / "data" / "profiles.json.gz"
CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"

JsonObj = dict[str, Any]
_MODEL = models["r4"]
_OPTIONS = {"traceFn": lambda _label, _value: None}  # trace() in an invariant prints nothing
_RESOURCE_SOURCES = ("http://hl7.org/fhir/StructureDefinition/DomainResource",
                     "http://hl7.org/fhir/StructureDefinition/Resource")
_SKIPPED_SOURCES = ("http://hl7.org/fhir/StructureDefinition/Element",
                    "http://hl7.org/fhir/StructureDefinition/Extension")


@dataclass
class Invariant:
    """One ElementDefinition.constraint with its compiled FHIRPath (None: fhirpathpy cannot
    parse it, so it is not evaluated)."""

    key: str
    severity: str
    human: str
    expression: str
    parsed: Any

    @property
    def evaluable(self) -> bool:
        return self.parsed is not None


@dataclass
class Rule:
    """One ElementDefinition of a snapshot, with the rules of its children and slices."""

    id: str
    path: str
    name: str  # the last path segment, e.g. "code" or "value[x]"
    slice_name: str | None
    min: int
    max: int | None
    types: tuple[str, ...]
    type_profiles: tuple[str, ...] = ()  # e.g. the extension definition of an extension slice
    fixed: tuple[str, Any] | None = None
    pattern: tuple[str, Any] | None = None
    binding: str | None = None
    slicing: JsonObj | None = None
    invariants: list[Invariant] = field(default_factory=list)
    children: dict[str, Rule] = field(default_factory=dict)
    slices: list[Rule] = field(default_factory=list)
    check_cardinality: bool = True


@dataclass
class Profile:
    """A compiled profile: its root rule, for resources of `type`."""

    url: str
    name: str
    type: str
    root: Rule
    invariants: list[Invariant]

    @property
    def skipped_invariants(self) -> list[Invariant]:
        return [i for i in self.invariants if not i.evaluable]


class UnknownProfile(LookupError):
    """No profile with this canonical URL is known."""


@cache
def _raw() -> dict[str, JsonObj]:
    data: dict[str, JsonObj] = orjson.loads(gzip.decompress(DATA_FILE.read_bytes()))["profiles"]
    return data


def known_profiles() -> list[str]:
    """The canonical URLs of every profile resources can be validated against."""
    return sorted(_raw())


def is_known(url: str) -> bool:
    return url.split("|", 1)[0] in _raw()


_AS_FUNCTION = re.compile(r"(?<![\w.])as\(|(?<=\.)as\(")


@cache
def _parse(expression: str) -> Any:
    """The parsed FHIRPath, or None. R4's invariants use the function as(T) on collections
    (dom-3: `descendants().as(canonical)`), as FHIRPath N1 allowed; fhirpathpy implements the
    later singleton-only as(), so it is read as ofType(T), its meaning on a collection."""
    try:
        return parse(_AS_FUNCTION.sub("ofType(", expression))
    except Exception:  # noqa: BLE001 - fhirpathpy's parser raises assorted errors
        return None


def _value_key(el: JsonObj, prefix: str) -> tuple[str, Any] | None:
    for k, v in el.items():
        if k.startswith(prefix):
            return k, v
    return None


def _segments(element_id: str) -> list[str]:
    """An element id's segments (`name` or `name:slice`); R4's slice names have no dots."""
    return element_id.split(".")


@cache
def compile_profile(url: str) -> Profile:
    """The compiled rules of the profile `url` (cached); UnknownProfile if there is none."""
    raw = _raw().get(url.split("|", 1)[0])
    if raw is None:
        raise UnknownProfile(url)
    core = raw["derivation"] == "specialization"
    base = None if core else _raw().get(CORE_PREFIX + raw["type"])
    base_by_path: dict[str, JsonObj] = {}
    base_keys: set[str] = set()
    if base is not None:
        for el in base["elements"]:
            base_by_path[el["path"]] = el
            base_keys.update(c["key"] for c in el.get("constraint", []))
    rules: dict[str, Rule] = {}
    invariants: list[Invariant] = []
    root: Rule | None = None
    for el in raw["elements"]:
        segs = _segments(el.get("id") or el["path"])
        last = segs[-1]
        name, _, slice_name = last.partition(":")
        mx = str(el.get("max", "1"))
        rule = Rule(
            id=".".join(segs), path=el["path"], name=name, slice_name=slice_name or None,
            min=int(el.get("min", 0)), max=None if mx == "*" else int(mx),
            types=tuple(t["code"] for t in el.get("type", [])),
            type_profiles=tuple(p for t in el.get("type", []) for p in t.get("profile", [])),
            fixed=_value_key(el, "fixed"), pattern=_value_key(el, "pattern"),
            slicing=el.get("slicing"),
        )
        base_el = base_by_path.get(el["path"]) if not slice_name else None
        if core:
            rule.check_cardinality = False  # resources.validation checks the core cardinality
        elif base_el is not None and (base_el.get("min"), str(base_el.get("max"))) == (
                el.get("min"), mx) and not any(":" in s for s in segs):
            rule.check_cardinality = False
        binding = el.get("binding")
        if binding and not core:
            same = base_el is not None and (base_el.get("binding") or "").split("|")[0] == \
                binding.split("|")[0]
            if not same:
                rule.binding = binding
        for c in el.get("constraint", []):
            source = c.get("source", "")
            if c.get("bestPractice"):
                continue  # guidance (e.g. dom-6, "should have narrative"), not a rule
            if core and source and source not in (raw["url"], *_RESOURCE_SOURCES):
                continue
            if not core and (c["key"] in base_keys or source in _SKIPPED_SOURCES):
                continue
            inv = Invariant(c["key"], c["severity"], c["human"], c["expression"],
                            _parse(c["expression"]))
            rule.invariants.append(inv)
            invariants.append(inv)
        rules[rule.id] = rule
        if len(segs) == 1:
            root = rule
            continue
        parent = rules.get(".".join(segs[:-1]))
        if parent is None:
            continue  # an element under something not in the snapshot: nothing to attach to
        if slice_name:
            sliced = parent.children.get(name)
            if sliced is not None:
                sliced.slices.append(rule)
        else:
            parent.children[name] = rule
    assert root is not None, url
    return Profile(raw["url"], raw.get("name") or raw["url"], raw["type"], root, invariants)


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    value: Any
    path: str  # the FHIRPath-style location, e.g. Observation.component[0].code
    type: str | None  # the type of a choice value (from its JSON key), else None


def _primitive_type(suffix: str) -> str:
    low = suffix[0].lower() + suffix[1:]
    return low if low in PRIMITIVE_CHECKERS else suffix


def _children(node: _Node, name: str) -> list[_Node]:
    obj = node.value
    if not isinstance(obj, dict):
        return []
    out: list[_Node] = []
    keys: list[tuple[str, str | None]]
    if name.endswith("[x]"):
        prefix = name[:-3]
        keys = [(k, _primitive_type(k[len(prefix):])) for k in obj
                if isinstance(k, str) and k.startswith(prefix) and len(k) > len(prefix)
                and k[len(prefix)].isupper()]
    else:
        keys = [(name, None)] if name in obj else []
    for key, typ in keys:
        value = obj[key]
        if isinstance(value, list):
            out.extend(_Node(v, f"{node.path}.{key}[{i}]", typ) for i, v in enumerate(value))
        else:
            out.append(_Node(value, f"{node.path}.{key}", typ))
    return out


def _navigate(value: Any, segs: list[str]) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for seg in segs:
        nxt: list[Any] = []
        for it in items:
            if isinstance(it, dict) and seg in it:
                v = it[seg]
                nxt.extend(v if isinstance(v, list) else [v])
        items = nxt
    return items


def matches_pattern(value: Any, pattern: Any) -> bool:
    """Whether `value` has at least the content of `pattern`
    (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.pattern_x_)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(v, p) for v in values) for p in pattern)
    return bool(value == pattern)


def _expected(rule: Rule, segs: list[str]) -> list[Any]:
    """The values a slice fixes (or patterns) at a discriminator path; an extension slice
    fixes its url by naming the extension's definition (type.profile)."""
    out: list[Any] = []
    if segs == ["url"] and "Extension" in rule.types:
        out.extend(rule.type_profiles)
    for fixed in (rule.fixed, rule.pattern):
        if fixed is not None:
            out.extend(_navigate(fixed[1], segs))
    if segs:
        child = rule.children.get(segs[0])
        if child is not None:
            out.extend(_expected(child, segs[1:]))
            for sl in child.slices:
                out.extend(_expected(sl, segs[1:]))
    return out


def _find(rule: Rule, segs: list[str]) -> Rule | None:
    for seg in segs:
        nxt = rule.children.get(seg)
        if nxt is None:
            return None
        rule = nxt
    return rule


def _in_slice(sl: Rule, node: _Node, discriminators: list[JsonObj]) -> bool:
    if not discriminators:
        return False
    for d in discriminators:
        kind, path = d.get("type"), str(d.get("path", "$this"))
        segs = [] if path == "$this" else path.split(".")
        if kind in ("value", "pattern"):
            expected = _expected(sl, segs)
            actual = _navigate(node.value, segs)
            if not expected or not any(matches_pattern(a, e) for a in actual for e in expected):
                return False
        elif kind == "type":
            if segs or node.type is None or node.type not in sl.types:
                return False
        elif kind == "exists":
            target = _find(sl, segs)
            if target is None or bool(_navigate(node.value, segs)) != (target.min > 0):
                return False
        else:  # profile discriminators need the profiles of references: not matched
            return False
    return True


def _system(coded: JsonObj) -> str | None:
    system = coded.get("system")
    return system if isinstance(system, str) else None  # a bad one is the base rules' error


def _codes(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if isinstance(value.get("code"), str):
            yield _system(value), value["code"]
        codings = value.get("coding")
        for c in codings if isinstance(codings, list) else []:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                yield _system(c), c["code"]


def _local_refs(value: Any, into: set[str]) -> set[str]:
    """Every string starting with '#' in `value` (references, canonicals and uris to contained
    resources)."""
    if isinstance(value, str):
        if value.startswith("#"):
            into.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _local_refs(v, into)
    elif isinstance(value, list):
        for v in value:
            _local_refs(v, into)
    return into


def _contained_referenced(resource: JsonObj) -> bool:
    """dom-3 (https://hl7.org/fhir/R4/domainresource.html#invs): each contained resource is
    referred to from elsewhere in the resource, or refers to its container ('#')."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return True
    refs = _local_refs(resource, set())
    for c in contained:
        if not isinstance(c, dict):
            continue
        if f"#{c.get('id')}" not in refs and "#" not in _local_refs(c, set()):
            return False
    return True


class _Checker:
    def __init__(self, profile: Profile, resource: JsonObj, issues: list[ValidationIssue],
                 skipped: list[str]) -> None:
        self.profile = profile
        self.resource = resource
        self.issues = issues
        self.skipped = skipped

    def error(self, code: str, message: str, where: str, severity: str = "error") -> None:
        self.issues.append(ValidationIssue(severity, code, message, where))

    def apply(self, rule: Rule, node: _Node, label: str) -> None:
        if node.type is not None and rule.types and node.type not in rule.types:
            self.error("structure", f"{label}: type {node.type} is not allowed here (allowed: "
                       f"{', '.join(rule.types)})", node.path)
        if rule.fixed is not None and node.value != rule.fixed[1]:
            self.error("value", f"{label}: the value must be exactly "
                       f"{orjson.dumps(rule.fixed[1]).decode()} ({rule.fixed[0]})", node.path)
        if rule.pattern is not None and not matches_pattern(node.value, rule.pattern[1]):
            self.error("value", f"{label}: the value must match the pattern "
                       f"{orjson.dumps(rule.pattern[1]).decode()} ({rule.pattern[0]})",
                       node.path)
        if rule.binding is not None:
            self.binding(rule, node, label)
        for inv in rule.invariants:
            self.invariant(inv, rule, node)
        for name, child in rule.children.items():
            kids = _children(node, name)
            self.cardinality(child, kids, f"{node.path}.{name}", f"{self.profile.name}")
            if child.slices and child.slicing:
                self.slices(child, kids)
            for k in kids:
                self.apply(child, k, label)

    def cardinality(self, rule: Rule, kids: list[_Node], where: str, label: str) -> None:
        if not rule.check_cardinality:
            return
        what = f"slice '{rule.slice_name}' of {rule.path}" if rule.slice_name else rule.path
        if len(kids) < rule.min:
            self.error("required" if not kids else "structure",
                       f"{label}: {what} needs at least {rule.min} value(s), found {len(kids)}",
                       where)
        if rule.max is not None and len(kids) > rule.max:
            self.error("structure", f"{label}: {what} allows at most {rule.max} value(s), "
                       f"found {len(kids)}", kids[rule.max].path if rule.max else kids[0].path)

    def slices(self, sliced: Rule, kids: list[_Node]) -> None:
        assert sliced.slicing is not None
        discriminators = sliced.slicing.get("discriminator") or []
        assigned: dict[str, list[_Node]] = {sl.id: [] for sl in sliced.slices}
        for k in kids:
            for sl in sliced.slices:
                if _in_slice(sl, k, discriminators):
                    assigned[sl.id].append(k)
                    break
            else:
                if sliced.slicing.get("rules") == "closed":
                    self.error("structure", f"{self.profile.name}: {k.path} matches none of the "
                               f"slices of {sliced.path}, and the slicing is closed", k.path)
        parent_path = kids[0].path.rsplit(".", 1)[0] if kids else ""
        for sl in sliced.slices:
            where = f"{parent_path}.{sliced.name}" if parent_path else sliced.path
            self.cardinality(sl, assigned[sl.id], where, self.profile.name)
            for k in assigned[sl.id]:
                self.apply(sl, k, f"{self.profile.name} (slice {sl.slice_name})")

    def binding(self, rule: Rule, node: _Node, label: str) -> None:
        assert rule.binding is not None
        expansion = value_set_expansion(rule.binding)
        if expansion is None:
            return  # a value set the server cannot enumerate: the binding is not checked
        codes = list(_codes(node.value))
        if not codes:
            return
        for system, code in codes:
            if system is None and any(code in c for c in expansion.values()):
                return
            if system is not None and code in expansion.get(system, ()):
                return
        shown = ", ".join(f"{s}|{c}" if s else c for s, c in codes)
        self.error("code-invalid", f"{label}: {shown} is not in the required value set "
                   f"{rule.binding}", node.path)

    def invariant(self, inv: Invariant, rule: Rule, node: _Node) -> None:
        if inv.parsed is None:
            self.skipped.append(inv.key)
            return
        if inv.expression.startswith("contained.") and isinstance(node.value, dict) and \
                "contained" not in node.value:
            return  # dom-2..dom-5 hold for a resource with nothing contained
        if inv.key == "dom-3" and isinstance(node.value, dict):
            # the same rule in Python: as FHIRPath (descendants() per contained resource) it
            # takes seconds on a resource with many contained ones
            if not _contained_referenced(node.value):
                self.error("invariant", f"{inv.key}: {inv.human} ({self.profile.name})",
                           node.path)
            return
        try:
            with FHIRPATH_LOCK:
                focus = ResourceNode.create_node(node.value, rule.path) if "." in rule.path \
                    else node.value
                result = apply_parsed_path(
                    focus, inv.parsed, {"resource": self.resource, "rootResource": self.resource},
                    _MODEL, _OPTIONS)
        except Exception:  # noqa: BLE001 - functions fhirpathpy lacks raise assorted errors
            self.skipped.append(inv.key)
            return
        if result == [False]:
            self.error("invariant", f"{inv.key}: {inv.human} ({self.profile.name})", node.path,
                       "warning" if inv.severity == "warning" else "error")


def validate_profile(
    resource: JsonObj, url: str, skipped: list[str] | None = None
) -> list[ValidationIssue]:
    """Problems of `resource` against the profile `url` (UnknownProfile if none): the
    profile's own rules only, those of the base resource are resources.validation's.
    The keys of invariants that could not be evaluated are appended to `skipped`."""
    profile = compile_profile(url)
    issues: list[ValidationIssue] = []
    rtype = resource.get("resourceType")
    if rtype != profile.type:
        return [ValidationIssue("error", "invalid", f"The profile {profile.url} is for "
                                f"{profile.type} resources, not {rtype}", "resourceType")]
    _Checker(profile, resource, issues, [] if skipped is None else skipped).apply(
        profile.root, _Node(resource, profile.type, None), profile.name)
    return issues

