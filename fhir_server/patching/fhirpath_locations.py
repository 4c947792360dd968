"""Where a FHIRPath Patch path points: the locations in a resource's JSON (object, key, array
index) that an operation changes (https://hl7.org/fhir/R4/fhirpatch.html).

fhirpathpy evaluates FHIRPath to values, not to places, so the path is parsed with fhirpathpy's
parser and walked here over the R4 element definitions. The subset a patch path may use: element
names (choice elements by their FHIRPath name `value` or their JSON name `valueQuantity`),
`[n]`, `first()`, `last()`, `tail()`, `skip(n)`, `take(n)`, `single()`, `ofType(T)`/`as(T)`,
`extension(url)`, `where(criteria)` (the criteria are any FHIRPath, evaluated by fhirpathpy on
each candidate) and `resolve()` of a reference to a contained resource ("resolve() SHALL only be
used to refer to contained resource within the resource being patched"). A path may start with
the resource type, `%resource` or `$this`, or directly with an element name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from resources.fhirpath_lock import FHIRPATH_LOCK
from resources.structure import COMPLEX, PRIMITIVE, RESOURCE, XHTML, Element, Node, registry

AST = dict[str, Any]
_R4_MODEL = models["r4"]


class PathError(Exception):
    """A path that is not one a patch may use (400) or that cannot apply here (422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, eq=False)
class Location:
    """One element in the resource: `owner[key]`, or `owner[key][index]` in an array. The root
    (the resource itself) has no owner. `owner_node` describes `owner`; `element` is the
    definition of `key` in it."""

    owner: dict[str, Any] | None
    key: str
    index: int | None
    element: Element | None
    owner_node: Node | None
    node: Node | None  # what describes the value, for complex elements and resources
    path: str  # e.g. Patient.name[0].given[1], for messages

    @property
    def is_primitive(self) -> bool:
        return self.element is not None and self.element.kind in (PRIMITIVE, XHTML)

    @property
    def value(self) -> Any:
        """The JSON value here (for a primitive without a value but with extensions: None)."""
        if self.owner is None:
            raise AssertionError("the root has no owner")
        raw = self.owner.get(self.key)
        if self.index is None:
            return raw
        return raw[self.index] if isinstance(raw, list) and self.index < len(raw) else None

    @property
    def type_name(self) -> str:
        """The FHIR type of the value (the resourceType for resources)."""
        if self.node is not None and self.node.is_resource:
            return self.node.name
        assert self.element is not None
        return self.element.type


class _Strict(ErrorListener):
    """Syntax errors raise (fhirpathpy's own parse() recovers from them silently)."""

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str,
                    e: Any) -> None:
        raise PathError(400, f"syntax error at column {column + 1}: {msg}")


_KEYWORD_NAME = re.compile(r"\.(div|mod|and|or|xor|implies)(?![A-Za-z0-9_`])")


def _quote_keyword_names(text: str) -> str:
    """`Patient.text.div` names Narrative.div, though `div` is a FHIRPath operator: outside
    string literals, a keyword right after a dot becomes a delimited name (.`div`)."""
    out, i = [], 0
    for m in re.finditer(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`", text):
        out.append(_KEYWORD_NAME.sub(r".`\1`", text[i:m.start()]))
        out.append(m.group(0))
        i = m.end()
    out.append(_KEYWORD_NAME.sub(r".`\1`", text[i:]))
    return "".join(out)


def parse_path(text: str) -> AST:
    """The fhirpathpy syntax tree of a patch path (fhirpathpy's lexer, parser and tree
    builder, with syntax errors reported), or 400."""
    if not text.strip():
        raise PathError(400, "The path is empty")
    lexer = FHIRPathLexer(InputStream(_quote_keyword_names(text)))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Strict())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Strict())
    try:
        tree = parser.entireExpression()
    except PathError as exc:
        raise PathError(400, f"'{text}' is not a FHIRPath expression: {exc.message}") from exc
    except Exception as exc:  # the lexer raises its own errors on characters it cannot read
        raise PathError(400, f"'{text}' is not a FHIRPath expression: {exc}") from exc
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree)
    entire: AST = listener.parentStack[0]["children"][0]
    return entire["children"][0]


def root_location(resource: dict[str, Any]) -> Location:
    """The resource itself."""
    rtype = resource["resourceType"]
    return Location(None, "", None, None, None, registry().nodes[rtype], rtype)


def evaluate(resource: dict[str, Any], ast: AST) -> list[Location]:
    """The locations a parsed path selects in `resource` (a valid R4 resource). Element names
    are checked against the definitions first, so a misspelt name is a 400 even where the
    resource has nothing to navigate."""
    _Types(resource["resourceType"]).expression(ast)
    return _Evaluator(resource).expression(ast)


def resource_of(resource: dict[str, Any], root: Location, loc: Location) -> dict[str, Any]:
    """The JSON object a location stands for: the resource for the root."""
    if loc is root or loc.owner is None:
        return resource
    value = loc.value
    assert isinstance(value, dict)
    return value


def element_part(loc: Location, create: bool) -> dict[str, Any] | None:
    """The `_name` object holding a primitive's id and extensions
    (https://hl7.org/fhir/R4/json.html#primitive), made when `create` and missing."""
    assert loc.owner is not None and loc.is_primitive
    ext_key = "_" + loc.key
    if loc.index is None:
        part = loc.owner.get(ext_key)
        if part is None and create:
            part = loc.owner[ext_key] = {}
        return part if isinstance(part, dict) else None
    parts = loc.owner.get(ext_key)
    if not isinstance(parts, list):
        if not create:
            return None
        values = loc.owner.get(loc.key)
        parts = loc.owner[ext_key] = [None] * (len(values) if isinstance(values, list) else 0)
    while len(parts) <= loc.index:
        parts.append(None)
    part = parts[loc.index]
    if part is None and create:
        part = parts[loc.index] = {}
    return part if isinstance(part, dict) else None


def choice_elements(node: Node, name: str) -> list[Element]:
    """The typed elements of a choice named `name` (value -> valueQuantity, valueString, ...)."""
    return [el for el in node.elements.values() if el.choice == name]


def find_elements(node: Node, name: str) -> list[Element]:
    """The elements a FHIRPath name means in `node`: one, or every type of a choice."""
    el = node.elements.get(name)
    if el is not None:
        return [el]
    return choice_elements(node, name)


def node_of(el: Element, value: Any) -> Node | None:
    """What describes a value of `el`: its datatype or backbone, or its resource type."""
    if el.kind == COMPLEX:
        return el.node
    if el.kind == RESOURCE:
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        return registry().nodes.get(rtype) if isinstance(rtype, str) else None
    return None


_Type = Node | Element | None  # a datatype, backbone or resource; a primitive; unknown


class _Types:
    """Walks a path over the element definitions only: what types each step can hold."""

    def __init__(self, rtype: str) -> None:
        self.rtype = rtype
        self.root: list[_Type] = [registry().nodes[rtype]]

    def expression(self, ast: AST) -> list[_Type]:
        kind = ast.get("type")
        children: list[AST] = ast.get("children", [])
        if kind == "TermExpression":
            return self.term(children[0])
        if kind == "InvocationExpression":
            return self.invocation(self.expression(children[0]), children[1])
        if kind == "IndexerExpression":
            return self.expression(children[0])
        return [None]  # not a path: the evaluator says so

    def term(self, term: AST) -> list[_Type]:
        kind = term.get("type")
        children: list[AST] = term.get("children", [])
        if kind == "ParenthesizedTerm":
            return self.expression(children[0])
        if kind == "InvocationTerm":
            inv = children[0]
            if inv.get("type") == "MemberInvocation":
                name = _identifier(inv["children"][0])
                if name == self.rtype:
                    return self.root
                _check_start(name, self.rtype)
            if inv.get("type") in ("MemberInvocation", "FunctionInvocation"):
                return self.invocation(self.root, inv)
        return self.root

    def invocation(self, types: list[_Type], inv: AST) -> list[_Type]:
        if inv.get("type") == "MemberInvocation":
            return self.member(types, _identifier(inv["children"][0]))
        if inv.get("type") != "FunctionInvocation":
            return [None]
        fn = inv["children"][0]
        name = _identifier(fn["children"][0])
        params: list[AST] = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
        if name in ("ofType", "as") and len(params) == 1:
            return self.narrow(types, _type_name(params[0]))
        if name == "extension":
            return [registry().nodes["Extension"]]
        if name == "resolve":
            return [None]
        return types

    def member(self, types: list[_Type], name: str) -> list[_Type]:
        out: list[_Type] = []
        known = False
        for t in types:
            if t is None:
                out.append(None)
                known = True
                continue
            node = t if isinstance(t, Node) else registry().nodes["Element"]
            if not isinstance(t, Node) and name not in ("id", "extension"):
                continue
            for el in find_elements(node, name):
                known = True
                out.append(el.node if el.kind == COMPLEX else None if el.kind == RESOURCE
                           else el)
        if not known:
            shown = ", ".join(sorted({t.name if isinstance(t, Node) else t.type
                                      for t in types if t is not None}))
            raise PathError(400, f"'{name}' is not an element of {shown or 'nothing'}"
                                 + (" (a primitive has only id and extension)"
                                    if any(isinstance(t, Element) for t in types) else ""))
        return out

    def narrow(self, types: list[_Type], wanted: str) -> list[_Type]:
        out: list[_Type] = []
        for t in types:
            if t is None:
                out.append(registry().nodes.get(wanted))
            elif (t.name if isinstance(t, Node) else t.type) == wanted:
                out.append(t)
        return out


class _Evaluator:
    """Walks one path over one resource."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.root = root_location(resource)

    # -- expressions ---------------------------------------------------------------------------

    def expression(self, ast: AST) -> list[Location]:
        kind = ast.get("type")
        children: list[AST] = ast.get("children", [])
        if kind == "TermExpression":
            return self.term(children[0])
        if kind == "InvocationExpression":
            base = self.expression(children[0])
            return self.invocation(base, children[1])
        if kind == "IndexerExpression":
            base = self.expression(children[0])
            n = self.integer(children[1], "an index")
            return base[n:n + 1] if n >= 0 else []
        raise PathError(400, f"'{_text(ast)}' is not a path: a patch path selects elements "
                             "(names, [n], where(), first(), ofType(), ...)")

    def term(self, term: AST) -> list[Location]:
        kind = term.get("type")
        children: list[AST] = term.get("children", [])
        if kind == "ParenthesizedTerm":
            return self.expression(children[0])
        if kind == "ExternalConstantTerm":
            name = _identifier(children[0]["children"][0])
            if name in ("resource", "rootResource", "context"):
                return [self.root]
            raise PathError(400, f"%{name} cannot start a patch path")
        if kind == "InvocationTerm":
            inv = children[0]
            if inv.get("type") == "ThisInvocation":
                return [self.root]
            if inv.get("type") == "MemberInvocation":
                name = _identifier(inv["children"][0])
                if name == self.resource["resourceType"]:
                    return [self.root]
                _check_start(name, self.resource["resourceType"])
            return self.invocation([self.root], inv)
        raise PathError(400, f"'{_text(term)}' is not a path")

    def invocation(self, base: list[Location], inv: AST) -> list[Location]:
        kind = inv.get("type")
        if kind == "MemberInvocation":
            name = _identifier(inv["children"][0])
            return [c for loc in base for c in self.children(loc, name)]
        if kind == "FunctionInvocation":
            fn = inv["children"][0]
            name = _identifier(fn["children"][0])
            params: list[AST] = fn["children"][1]["children"] if len(fn["children"]) > 1 else []
            return self.function(base, name, params)
        raise PathError(400, f"'{_text(inv)}' cannot be used in a patch path")

    # -- navigation ----------------------------------------------------------------------------

    def children(self, loc: Location, name: str) -> list[Location]:
        """The child elements `name` of one location, in document order."""
        if loc.is_primitive:
            if name not in ("id", "extension"):
                raise PathError(400, f"{loc.path} is a primitive ({loc.type_name}); it has only "
                                     "id and extension")
            part = element_part(loc, create=False)
            element = registry().nodes["Element"]
            return self.members(part, element, name, loc.path) if part is not None else []
        if loc.node is None:
            raise PathError(422, f"{loc.path} cannot be navigated")
        obj = resource_of(self.resource, self.root, loc)
        return self.members(obj, loc.node, name, loc.path)

    def members(self, obj: dict[str, Any], node: Node, name: str, path: str) -> list[Location]:
        elements = find_elements(node, name)
        if not elements:
            raise PathError(400, f"{path} has no element '{name}'")
        out: list[Location] = []
        for el in elements:
            key = el.name
            primitive = el.kind in (PRIMITIVE, XHTML)
            if key not in obj and not (primitive and "_" + key in obj):
                continue
            value = obj.get(key)
            if el.is_array:
                n = len(value) if isinstance(value, list) else 0
                if primitive and isinstance(obj.get("_" + key), list):
                    n = max(n, len(obj["_" + key]))
                for i in range(n):
                    item = value[i] if isinstance(value, list) and i < len(value) else None
                    out.append(Location(obj, key, i, el, node, node_of(el, item),
                                        f"{path}.{key}[{i}]"))
            else:
                out.append(Location(obj, key, None, el, node, node_of(el, value), f"{path}.{key}"))
        return out

    # -- functions -----------------------------------------------------------------------------

    def function(self, base: list[Location], name: str, params: list[AST]) -> list[Location]:
        arity = {"first": 0, "last": 0, "tail": 0, "single": 0, "resolve": 0, "skip": 1,
                 "take": 1, "ofType": 1, "as": 1, "extension": 1, "where": 1}
        if name not in arity:
            raise PathError(400, f"The FHIRPath function {name}() cannot be used in a patch path")
        if len(params) != arity[name]:
            raise PathError(400, f"{name}() takes {arity[name]} argument(s), not {len(params)}")
        if name == "first":
            return base[:1]
        if name == "last":
            return base[-1:]
        if name == "tail":
            return base[1:]
        if name == "single":
            if len(base) > 1:
                raise PathError(422, f"single() applied to {len(base)} elements")
            return base
        if name == "skip":
            return base[max(self.integer(params[0], "skip()'s argument"), 0):]
        if name == "take":
            return base[:max(self.integer(params[0], "take()'s argument"), 0)]
        if name in ("ofType", "as"):
            wanted = _type_name(params[0])
            return [loc for loc in base if loc.type_name == wanted]
        if name == "extension":
            url = self.string(params[0], "extension()'s argument")
            out = []
            for loc in base:
                for ext in self.children(loc, "extension"):
                    if isinstance(ext.value, dict) and ext.value.get("url") == url:
                        out.append(ext)
            return out
        if name == "resolve":
            return [self.resolve(loc) for loc in base]
        return [loc for loc in base if self.matches(loc, params[0])]

    def matches(self, loc: Location, criteria: AST) -> bool:
        """where(criteria) for one location, evaluated by fhirpathpy."""
        if loc.owner is None:
            data: Any = self.resource
            type_path = self.resource["resourceType"]
        else:
            data = loc.value
            assert loc.element is not None
            el = loc.element
            type_path = el.path if el.type == "BackboneElement" else loc.type_name
        env = {"resource": self.resource, "rootResource": self.resource}
        try:
            with FHIRPATH_LOCK:  # fhirpathpy keeps evaluation state in module globals
                result = apply_parsed_path(ResourceNode.create_node(data, type_path),
                                           {"children": [criteria]}, env, _R4_MODEL)
        except Exception as exc:  # fhirpathpy raises plain Exceptions
            raise PathError(400, f"The where() criteria cannot be evaluated: {exc}") from exc
        return bool(result == [True])

    def resolve(self, loc: Location) -> Location:
        """A Reference to a contained resource ('#id') resolved to that resource."""
        ref = loc.value.get("reference") if isinstance(loc.value, dict) else None
        if loc.type_name != "Reference" or not isinstance(ref, str):
            raise PathError(422, f"resolve() needs a Reference; {loc.path} is not one")
        if not ref.startswith("#"):
            raise PathError(400, f"resolve() of '{ref}' would cross to another resource; a "
                                 "patch may resolve only references to contained resources")
        for c in self.children(self.root, "contained"):
            if isinstance(c.value, dict) and c.value.get("id") == ref[1:]:
                return c
        raise PathError(422, f"No contained resource has the id '{ref[1:]}' ({loc.path})")

    # -- literals ------------------------------------------------------------------------------

    def integer(self, ast: AST, what: str) -> int:
        text = _literal(ast, "NumberLiteral")
        if text is None or not text.isdigit():
            raise PathError(400, f"{what} must be a non-negative integer literal, not "
                                 f"'{_text(ast)}'")
        return int(text)

    def string(self, ast: AST, what: str) -> str:
        text = _literal(ast, "StringLiteral")
        if text is None:
            raise PathError(400, f"{what} must be a string literal, not '{_text(ast)}'")
        return _unquote(text)


def _check_start(name: str, rtype: str) -> None:
    """A path that starts with another resource type is for another resource: 400."""
    if name in registry().resource_types:
        raise PathError(400, f"The path starts with {name}, but the resource is a {rtype}")


def _identifier(ast: AST) -> str:
    text = str(ast.get("text", ""))
    if text.startswith("`") and text.endswith("`") and len(text) >= 2:
        return text[1:-1]
    return text


def _type_name(ast: AST) -> str:
    """The type argument of ofType()/as(): `Quantity` or `FHIR.Quantity`."""
    text = _text(ast)
    return text.removeprefix("FHIR.").strip("`")


def _literal(ast: AST, kind: str) -> str | None:
    """The text of a literal of `kind` (e.g. NumberLiteral) wrapped in a TermExpression."""
    node = ast
    for expected in ("TermExpression", "LiteralTerm", kind):
        if node.get("type") != expected:
            return None
        if expected == kind:
            return str(node.get("text", ""))
        node = node["children"][0]
    return None


def _unquote(text: str) -> str:
    """A FHIRPath string literal's value (https://hl7.org/fhirpath/#string)."""
    body = text[1:-1]
    escapes = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n",
               "r": "\r", "t": "\t"}
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _text(ast: AST) -> str:
    """Source-like text of a syntax node, for messages (fhirpathpy drops the whitespace)."""
    return str(ast.get("text") or "".join(_text(c) for c in ast.get("children", [])))

