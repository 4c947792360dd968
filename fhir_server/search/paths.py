"""Compile SearchParameter FHIRPath expressions (https://hl7.org/fhir/R4/fhirpath.html) into
value extractors, once per (expression, resource type).

fhirpathpy is the general engine. Most R4 search expressions are plain paths
(``Patient.name | Patient.address``, ``(Observation.value as Quantity)``,
``Observation.subject.where(resolve() is Patient)``); those are compiled here into key lookups
on the JSON, about 20x faster than evaluating them with fhirpathpy, and typed statically from
the R4 model so choice elements (``value[x]``) and datatypes are known without guessing.
``resolve() is X``, which fhirpathpy does not implement, is answered from the reference string.
For token parameters, ``code`` elements whose required binding implies one code system yield
Codings of that system (https://hl7.org/fhir/R4/search.html#token).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from resources.fhirpath_lock import FHIRPATH_LOCK as _FHIRPATH_LOCK
from resources.terminology import implied_system

Typed = tuple[str | None, Any]  # (FHIR type name, or None when unknown; the JSON value)
Extractor = Callable[[dict[str, Any]], list[Typed]]

_MODEL: dict[str, Any] = models["r4"]
_PATH2TYPE: dict[str, str] = _MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_PARENT: dict[str, str] = _MODEL["type2Parent"]
_BACKBONES = {p.rsplit(".", 1)[0] for p in _PATH2TYPE} | {p.rsplit(".", 1)[0] for p in _CHOICES}

PRIMITIVES = frozenset(
    "boolean integer string decimal uri url canonical base64Binary instant date dateTime time "
    "code oid id markdown unsignedInt positiveInt uuid xhtml".split()
)


class Unsupported(Exception):
    """The expression is outside the fast subset; fhirpathpy evaluates it."""


def split_union(expr: str) -> list[str]:
    """Top-level members of a FHIRPath union (``a | b | c``)."""
    out: list[str] = []
    depth = 0
    quoted = False
    cur: list[str] = []
    for ch in expr:
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "|" and depth == 0:
                out.append("".join(cur).strip())
                cur = []
                continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [m for m in out if m]


def member_root(member: str) -> str:
    """The first identifier of an expression member (its resource type when absolute)."""
    m = re.match(r"\(*\s*([A-Za-z_]\w*)", member)
    return m.group(1) if m else ""


# --- a tiny parser for the path subset ------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|([A-Za-z_]\w*)|(\d+)|(.))")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        tok = m.group(0).strip()
        if tok:
            out.append(tok)
        pos = m.end()
    return out


Op = tuple[Any, ...]  # ("child", name) | ("index", n) | ("oftype", T) | ("eq", field, literal)
#                      | ("resolve_is", T) | ("first",)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unsupported(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> list[Op]:
        ops = self.chain()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()!r}")
        return ops

    def chain(self) -> list[Op]:
        ops = self.primary()
        while True:
            tok = self.peek()
            if tok == ".":
                self.take()
                ops.extend(self.invocation())
            elif tok == "[":
                self.take()
                n = self.take()
                if not n.isdigit():
                    raise Unsupported("non-literal index")
                self.take("]")
                ops.append(("index", int(n)))
            elif tok == "as":
                self.take()
                ops.append(("oftype", self.type_name()))
            else:
                return ops

    def type_name(self) -> str:
        name = self.take()
        if self.peek() == ".":  # FHIR.Quantity / System.String
            self.take()
            name = self.take()
        if not re.fullmatch(r"[A-Za-z]\w*", name):
            raise Unsupported(f"bad type {name!r}")
        return name

    def primary(self) -> list[Op]:
        tok = self.take()
        if tok == "%" and self.peek() == "resource":
            self.take()
            return [("root",)]
        if tok == "(":
            ops = self.chain()
            self.take(")")
            return ops
        if not re.fullmatch(r"[A-Za-z_]\w*", tok) or self.peek() == "(":
            raise Unsupported(f"unsupported term {tok!r}")
        return [("child", tok)]

    def invocation(self) -> list[Op]:
        name = self.take()
        if self.peek() != "(":
            return [("child", name)]
        self.take("(")
        if name in ("ofType", "as"):
            t = self.type_name()
            self.take(")")
            return [("oftype", t)]
        if name == "first":
            self.take(")")
            return [("index", 0)]
        if name == "where":
            if self.peek() == "resolve":
                self.take()
                self.take("(")
                self.take(")")
                self.take("is")
                t = self.type_name()
                self.take(")")
                return [("resolve_is", t)]
            field = self.take()
            self.take("=")
            lit = self.take()
            if not (lit.startswith("'") and lit.endswith("'")):
                raise Unsupported("non-string literal")
            self.take(")")
            return [("eq", field, lit[1:-1])]
        raise Unsupported(f"function {name}()")


# --- static typing against the R4 model ---------------------------------------------------


def _cap(t: str) -> str:
    return t[0].upper() + t[1:]


def _fhir_type(choice_suffix: str) -> str:
    low = choice_suffix[0].lower() + choice_suffix[1:]
    return low if low in PRIMITIVES else choice_suffix


def _lookup(base: str, name: str) -> tuple[str, str] | None:
    """Find element `name` below type/path `base`, walking up the type hierarchy.
    Returns (element path, kind) with kind "choice", "typed" or "backbone"."""
    cur: str | None = base
    while cur:
        path = f"{cur}.{name}"
        path = _ELSEWHERE.get(path, path)
        if path in _CHOICES:
            return path, "choice"
        if path in _PATH2TYPE:
            return path, "typed"
        if path in _BACKBONES:
            return path, "backbone"
        cur = _PARENT.get(cur) if "." not in cur else None
    return None


def _is_a(t: str, ancestor: str) -> bool:
    cur: str | None = t
    while cur:
        if cur == ancestor:
            return True
        cur = _PARENT.get(cur)
    return False


@dataclass(frozen=True)
class Branch:
    """One statically typed way through an expression: runtime ops and the result type."""

    ops: tuple[Op, ...]  # ("get", key) | ("index", n) | ("eq", f, v) | ("ref_is", T) | ("rt", T)
    #                      | ("coding", system): a code as a Coding of that system (bind_codes)
    type: str | None  # FHIR type of the values (None: unknown)
    base: str  # the model path/type below which further navigation continues
    path: str = ""  # definition path of the element the values come from ("": not one element)


def _expand(ops: list[Op], base: str, typ: str | None) -> list[Branch]:
    """Resolve element names against the model, splitting choice elements per type."""
    branches = [Branch((), typ, base)]
    i = 0
    while i < len(ops):
        op = ops[i]
        nxt: list[Branch] = []
        consumed = 1
        for br in branches:
            if op[0] == "child":
                found = _lookup(br.base, op[1])
                if found is None:
                    continue  # no such element: the branch yields nothing
                path, kind = found
                if kind == "choice":
                    choices = _CHOICES[path]
                    if i + 1 < len(ops) and ops[i + 1][0] == "oftype":
                        wanted = _cap(ops[i + 1][1])
                        choices = [c for c in choices if c == wanted]
                        consumed = 2
                    for c in choices:
                        t = _fhir_type(c)
                        nxt.append(Branch(br.ops + (("get", op[1] + c),), t, t))
                elif kind == "typed":
                    t = _PATH2TYPE[path]
                    t = "string" if t.startswith("System.") else t
                    nb = path if t in ("BackboneElement", "Element") else t
                    nxt.append(Branch(br.ops + (("get", op[1]),), t, nb, path))
                else:
                    nxt.append(Branch(br.ops + (("get", op[1]),), "BackboneElement", path))
            elif op[0] == "oftype":
                want = op[1]
                if br.type == "Resource":
                    nxt.append(Branch(br.ops + (("rt", want),), want, want))
                elif br.type and (_is_a(br.type, want) or _is_a(br.type, _cap(want))):
                    nxt.append(br)
                elif br.type in PRIMITIVES and br.type == want:
                    nxt.append(br)
            elif op[0] == "index":
                nxt.append(Branch(br.ops + (op,), br.type, br.base, br.path))
            elif op[0] == "eq":
                nxt.append(Branch(br.ops + (op,), br.type, br.base, br.path))
            elif op[0] == "resolve_is":
                nxt.append(Branch(br.ops + (("ref_is", op[1]),), br.type, br.base, br.path))
            else:
                raise Unsupported(str(op))
        branches = nxt
        i += consumed
    return branches


def compile_branches(member: str, resource_type: str, base: str | None = None) -> list[Branch]:
    """Fast-path branches of one union member, absolute (rooted at `resource_type`) or relative
    to the model path `base`. Raises Unsupported when outside the subset."""
    ops = _Parser(member).parse()
    if ops and ops[0] == ("root",):  # %resource: the resource the composite is on
        return [
            Branch((("root",), *b.ops), b.type, b.base, b.path)
            for b in _expand(ops[1:], resource_type, resource_type)
        ]
    if base is None:
        if not ops or ops[0][0] != "child":
            raise Unsupported("no root")
        root = ops[0][1]
        if root not in (resource_type, "Resource", "DomainResource"):
            return []
        return _expand(ops[1:], resource_type, resource_type)
    return _expand(ops, base, None)


def bind_codes(branches: list[Branch]) -> list[Branch]:
    """`branches` with ``code`` elements that have an implied code system (the one system of
    their required binding) yielding Codings of that system, for token search: the system of
    a code is that of its value set (https://hl7.org/fhir/R4/search.html#token)."""
    out: list[Branch] = []
    for br in branches:
        system = implied_system(br.path) if br.type == "code" else None
        if system is None:
            out.append(br)
        else:
            out.append(Branch(br.ops + (("coding", system),), "Coding", br.base, br.path))
    return out


# --- runtime -------------------------------------------------------------------------------


def ref_type(ref: Any) -> str | None:
    """The resource type a Reference points at, from its `reference` string or `type`."""
    if not isinstance(ref, dict):
        return None
    s = ref.get("reference")
    if isinstance(s, str) and "/" in s:
        parts = s.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            return parts[-4]
        return parts[-2]
    t = ref.get("type")
    return t if isinstance(t, str) else None


def run_ops(ops: tuple[Op, ...], start: list[Any], root: Any = None) -> list[Any]:
    """Apply branch ops to a collection of JSON values (`root`: the resource, for %resource)."""
    cur = start
    for op in ops:
        kind = op[0]
        if kind == "root":
            cur = [root] if root is not None else []
            continue
        if kind == "get":
            key = op[1]
            nxt: list[Any] = []
            for v in cur:
                if type(v) is dict:
                    x = v.get(key)
                    if x is None:
                        continue
                    if type(x) is list:
                        nxt.extend(y for y in x if y is not None)
                    else:
                        nxt.append(x)
            cur = nxt
        elif kind == "index":
            cur = cur[op[1] : op[1] + 1]
        elif kind == "eq":
            cur = [v for v in cur if type(v) is dict and v.get(op[1]) == op[2]]
        elif kind == "ref_is":
            cur = [v for v in cur if ref_type(v) == op[1]]
        elif kind == "rt":
            cur = [v for v in cur if type(v) is dict and v.get("resourceType") == op[1]]
        elif kind == "coding":
            cur = [{"system": op[1], "code": v} for v in cur if type(v) is str]
        if not cur:
            return cur
    return cur


def _fast_extractor(branches: list[Branch]) -> Extractor:
    if len(branches) == 1 and all(op[0] == "get" for op in branches[0].ops):
        keys = tuple(op[1] for op in branches[0].ops)
        typ = branches[0].type
        if len(keys) == 1:
            key = keys[0]

            def one(resource: dict[str, Any]) -> list[Typed]:
                x = resource.get(key)
                if x is None:
                    return []
                if type(x) is list:
                    return [(typ, y) for y in x if y is not None]
                return [(typ, x)]

            return one

    plan = [(br.ops, br.type) for br in branches]

    def run(resource: dict[str, Any]) -> list[Typed]:
        out: list[Typed] = []
        for ops, typ in plan:
            for v in run_ops(ops, [resource]):
                out.append((typ, v))
        return out

    return run


def _normalise_for_fhirpathpy(member: str, resource_type: str) -> str:
    """R4 search expressions use `x as T` on collections; fhirpathpy wants singletons there."""
    text = re.sub(r"\(([\w.]+) as (\w+)\)", r"\1.ofType(\2)", member)
    text = re.sub(r"\.as\((\w+)\)", r".ofType(\1)", text)
    return re.sub(r"^(\(*)(Resource|DomainResource)\.", r"\g<1>" + resource_type + ".", text)


def _fhirpath_extractor(member: str, resource_type: str) -> Extractor:
    fn = fhirpathpy.compile(_normalise_for_fhirpathpy(member, resource_type), model=_MODEL)

    def run(resource: dict[str, Any]) -> list[Typed]:
        with _FHIRPATH_LOCK:
            values = fn(resource, None)
        return [(None, v) for v in values if v is not None]

    return run


@dataclass(frozen=True)
class Compiled:
    """A compiled expression: the extractor, and how many members needed fhirpathpy."""

    extract: Extractor
    slow_members: tuple[str, ...]


@cache
def compile_expression(expr: str, resource_type: str, codings: bool = False) -> Compiled | None:
    """Extractor of the values `expr` selects on resources of `resource_type` (None when no
    member of the union applies to that type); with `codings`, bound ``code`` elements yield
    Codings of their implied system (see `bind_codes`)."""
    extractors: list[Extractor] = []
    slow: list[str] = []
    fast: list[Branch] = []
    for member in split_union(expr):
        root = member_root(member)
        relative = root[:1].islower()  # R4 has a few (InsurancePlan.name is "name | alias")
        if not relative and root not in (resource_type, "Resource", "DomainResource"):
            continue
        try:
            fast.extend(
                compile_branches(member, resource_type, resource_type if relative else None)
            )
        except Unsupported:
            extractors.append(_fhirpath_extractor(member, resource_type))
            slow.append(member)
    if fast:
        extractors.insert(0, _fast_extractor(bind_codes(fast) if codings else fast))
    if not extractors:
        return None
    if len(extractors) == 1:
        return Compiled(extractors[0], tuple(slow))
    parts = tuple(extractors)

    def union(resource: dict[str, Any]) -> list[Typed]:
        out: list[Typed] = []
        for ex in parts:
            out.extend(ex(resource))
        return out

    return Compiled(union, tuple(slow))


RelativeExtractor = Callable[[Any, dict[str, Any]], list[Typed]]


@cache
def compile_relative(expr: str, base: str, resource_type: str) -> RelativeExtractor:
    """Extractor for a composite component expression relative to the model path `base`;
    it takes the element the composite's own expression selected, and the resource."""
    branches: list[Branch] = []
    for member in split_union(expr):
        branches.extend(compile_branches(member, resource_type, base))
    plan = [(br.ops, br.type) for br in branches]

    def run(element: Any, resource: dict[str, Any]) -> list[Typed]:
        out: list[Typed] = []
        for ops, typ in plan:
            for v in run_ops(ops, [element], resource):
                out.append((typ, v))
        return out

    return run
