"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource whose
`operation` parameters add, insert, delete, replace or move elements named by FHIRPath paths.

The rules applied, from the R4 page: a path selects a single element ("the FHIRPath statement
must return a single element"); except for delete, nothing found is an error, and delete of
nothing changes nothing; the value's type must fit the element ("Servers SHALL return an error
if the type is wrong"); add appends to a list, or sets a single element that has no value;
insert and move take 0-based indexes within one list; anonymous (backbone) content is given as
parts. A malformed Parameters or path is a 400; a patch that does not apply to this resource is
a 422 (RFC 5789 section 2.2). Whole elements are replaced and deleted: a primitive's `_name`
(id and extensions, https://hl7.org/fhir/R4/json.html#primitive) goes with its value, and lists
of primitives keep their `_name` arrays aligned. Objects and lists left empty are removed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.patching.fhirpath_locations import (
    AST,
    Location,
    PathError,
    choice_elements,
    element_part,
    evaluate,
    find_elements,
    parse_path,
    resource_of,
    root_location,
)
from resources.structure import COMPLEX, PRIMITIVE, RESOURCE, XHTML, Element, Node, registry
from resources.validation import validate_resource

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_PARTS: dict[str, tuple[str, ...]] = {  # the parts each type takes (all required)
    "add": ("path", "name", "value"),
    "insert": ("path", "index", "value"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_PART_NAMES = ("type", "path", "name", "value", "index", "source", "destination")
_STRINGS = frozenset({"string", "code", "id", "markdown", "uri", "url", "canonical", "oid",
                      "uuid", "base64Binary", "date", "dateTime", "instant", "time", "xhtml"})
_NUMBERS = frozenset({"integer", "positiveInt", "unsignedInt", "decimal"})
_QUANTITIES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity",
                         "MoneyQuantity"})


@dataclass
class PatchValue:
    """The `value` of an operation: a typed value[x] (with its `_value[x]`), a resource, or
    parts for anonymous content."""

    where: str  # its place in the Parameters, e.g. Parameters.parameter[0].part[3]
    type: str | None = None  # the FHIR type (value[x] suffix or resourceType); None for parts
    json: Any = None
    ext: Any = None
    parts: list[tuple[str, PatchValue]] | None = None


@dataclass
class Operation:
    """One `operation` parameter."""

    number: int  # its index in Parameters.parameter
    type: str
    path: str
    ast: AST
    name: str | None = None
    value: PatchValue | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None

    @property
    def where(self) -> str:
        return f"Parameters.parameter[{self.number}]"


def _bad(where: str, message: str) -> FhirError:
    return FhirError(400, [Issue("error", "invalid", f"{where}: {message}", (where,))])


# -- parsing -------------------------------------------------------------------------------------


def parse_fhirpath_patch(params: dict[str, Any]) -> list[Operation]:
    """The operations of a FHIRPath Patch Parameters resource, or 400 naming what is wrong."""
    problems = [p for p in validate_resource(params) if p.severity in ("error", "fatal")]
    if problems:
        raise FhirError(400, [Issue("error", p.code, f"The FHIRPath Patch: {p.diagnostics}",
                                    (p.expression,) if p.expression else ())
                              for p in problems])
    ops = []
    for i, param in enumerate(params.get("parameter", [])):
        ops.append(_operation(i, param))
    return ops


def _operation(number: int, param: dict[str, Any]) -> Operation:
    where = f"Parameters.parameter[{number}]"
    if param.get("name") != "operation":
        raise _bad(f"{where}.name", f"a FHIRPath Patch parameter is named 'operation', not "
                                    f"{param.get('name')!r}")
    parts: dict[str, tuple[str, dict[str, Any]]] = {}
    for j, part in enumerate(param.get("part", [])):
        pwhere = f"{where}.part[{j}]"
        name = part.get("name")
        if name not in _PART_NAMES:
            raise _bad(pwhere, f"unknown part {name!r}; the parts are {', '.join(_PART_NAMES)}")
        if name in parts:
            raise _bad(pwhere, f"the part '{name}' is given twice")
        parts[name] = (pwhere, part)
    if "type" not in parts:
        raise _bad(where, "the part 'type' (add | insert | delete | replace | move) is required")
    twhere, tpart = parts["type"]
    op_type = tpart.get("valueCode", tpart.get("valueString"))
    if op_type not in OPERATION_TYPES:
        raise _bad(twhere, f"type must be one of {', '.join(OPERATION_TYPES)} (valueCode), not "
                           f"{op_type!r}")
    wanted = _PARTS[op_type]
    for name, (pwhere, _) in parts.items():
        if name != "type" and name not in wanted:
            raise _bad(pwhere, f"the part '{name}' does not apply to {op_type}")
    for name in wanted:
        if name not in parts:
            raise _bad(where, f"{op_type} needs the part '{name}'")
    pwhere, ppart = parts["path"]
    path = _string(ppart, pwhere, "path")
    try:
        ast = parse_path(path)
    except PathError as exc:
        raise _bad(pwhere, exc.message) from exc
    op = Operation(number, op_type, path, ast)
    if "name" in parts:
        op.name = _string(parts["name"][1], parts["name"][0], "name")
    for name in ("index", "source", "destination"):
        if name in parts:
            setattr(op, name, _index(parts[name][1], parts[name][0], name))
    if "value" in parts:
        op.value = _value(*parts["value"])
    return op


def _string(part: dict[str, Any], where: str, what: str) -> str:
    value = part.get("valueString")
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, f"the part '{what}' needs a valueString")
    return value


def _index(part: dict[str, Any], where: str, what: str) -> int:
    value = part.get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(where, f"the part '{what}' needs a valueInteger of 0 or more")
    return value


def _value(where: str, part: dict[str, Any]) -> PatchValue:
    """A value part: value[x], resource, or parts naming the elements of anonymous content."""
    typed = sorted({k.lstrip("_") for k in part if k.lstrip("_").startswith("value")})
    kinds = len(typed) + ("resource" in part) + ("part" in part)
    if kinds != 1:
        raise _bad(where, "a value needs exactly one of value[x], resource or part")
    if typed:
        key = typed[0]
        el = registry().nodes["Parameters"].elements["parameter"].node
        assert el is not None
        return PatchValue(where, el.elements[key].type, part.get(key), part.get("_" + key))
    if "resource" in part:
        res = part["resource"]
        return PatchValue(where, res["resourceType"], res)
    subparts = []
    for j, sub in enumerate(part["part"]):
        swhere = f"{where}.part[{j}]"
        name = sub.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(swhere, "each part of a value names an element")
        subparts.append((name, _value(swhere, sub)))
    return PatchValue(where, parts=subparts)


# -- applying ------------------------------------------------------------------------------------


def apply_fhirpath_patch(resource: dict[str, Any], ops: list[Operation]) -> dict[str, Any]:
    """`resource` (a valid R4 resource, changed in place) with the operations applied in order."""
    for op in ops:
        try:
            _APPLY[op.type](resource, op)
        except PathError as exc:
            code = "invalid" if exc.status == 400 else "processing"
            where = (op.where, op.path) if exc.status == 422 else (op.where,)
            raise FhirError(exc.status, [Issue(
                "error", code, f"{op.where} ({op.type} at {op.path}): {exc.message}", where)],
            ) from exc
    _tidy(resource)
    return resource


def _one(op: Operation, locs: list[Location]) -> Location:
    if not locs:
        raise PathError(422, f"No content found at {op.path}")
    if len(locs) > 1:
        raise PathError(422, f"{op.path} matches {len(locs)} elements "
                             f"({', '.join(loc.path for loc in locs[:5])}); a patch path must "
                             "select a single element")
    return locs[0]


def _container(resource: dict[str, Any], loc: Location) -> tuple[dict[str, Any], Node]:
    """The object to add into at `loc`, and what describes it (a primitive's `_name` object)."""
    if loc.owner is None:
        assert loc.node is not None
        return resource, loc.node
    if loc.is_primitive:
        part = element_part(loc, create=True)
        assert part is not None
        return part, registry().nodes["Element"]
    if loc.node is None:
        raise PathError(422, f"{loc.path} holds no elements to add to")
    return resource_of(resource, root_location(resource), loc), loc.node


def _add(resource: dict[str, Any], op: Operation) -> None:
    assert op.name is not None and op.value is not None
    target = _one(op, evaluate(resource, op.ast))
    container, node = _container(resource, target)
    key, value, ext = _materialize(op.value, node, op.name, target.path)
    el = node.elements[key]
    if el.is_array:
        _list_insert(container, key, _list_len(container, key), value, ext)
        return
    taken = [e.name for e in _same_element(node, el)
             if e.name in container or "_" + e.name in container]
    if taken:
        raise PathError(422, f"{target.path}.{taken[0]} already has a value; add sets only "
                             "elements that have none (use replace)")
    container[key] = value
    if ext is not None:
        container["_" + key] = ext


def _replace(resource: dict[str, Any], op: Operation) -> None:
    assert op.value is not None
    target = _one(op, evaluate(resource, op.ast))
    if target.owner is None or target.owner_node is None or target.element is None:
        raise PathError(400, "replace cannot replace the resource itself")
    el = target.element
    key, value, ext = _materialize(op.value, target.owner_node, el.choice or el.name,
                                   target.path.rpartition(".")[0])
    if target.index is not None:
        _list_set(target.owner, key, target.index, value, ext)
    else:
        _rekey(target.owner, target.key, key, value, ext)


def _delete(resource: dict[str, Any], op: Operation) -> None:
    locs = evaluate(resource, op.ast)
    if not locs:
        return  # "Path of the element to delete (if found)"
    target = _one(op, locs)
    if target.owner is None:
        raise PathError(400, "delete cannot delete the resource itself")
    if target.index is not None:
        _list_pop(target.owner, target.key, target.index)
    else:
        target.owner.pop(target.key, None)
        target.owner.pop("_" + target.key, None)


def _insert(resource: dict[str, Any], op: Operation) -> None:
    assert op.index is not None and op.value is not None
    container, node, el, path = _collection(resource, op, create=True)
    n = _list_len(container, el.name)
    if op.index > n:
        raise PathError(422, f"index {op.index} is past the end of {path} ({n} items)")
    key, value, ext = _materialize(op.value, node, el.name, path.rpartition(".")[0])
    _list_insert(container, key, op.index, value, ext)


def _move(resource: dict[str, Any], op: Operation) -> None:
    assert op.source is not None and op.destination is not None
    container, _node, el, path = _collection(resource, op, create=False)
    n = _list_len(container, el.name)
    for what, i in (("source", op.source), ("destination", op.destination)):
        if i >= n:
            raise PathError(422, f"{what} {i} is not an index of {path} ({n} items)")
    value, ext = _list_pop(container, el.name, op.source)
    _list_insert(container, el.name, op.destination, value, ext)


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}


def _collection(
    resource: dict[str, Any], op: Operation, create: bool
) -> tuple[dict[str, Any], Node, Element, str]:
    """The list an insert or move works on: the path must end with the list's element name,
    e.g. `Patient.identifier` (the list may be empty for insert)."""
    ast, name = _split_last_name(op.ast, resource["resourceType"])
    parent = _one(op, evaluate(resource, ast)) if ast is not None else root_location(resource)
    if parent.owner is not None and parent.is_primitive and not create:
        part = element_part(parent, create=False)
        container, node = (part or {}), registry().nodes["Element"]
    else:
        container, node = _container(resource, parent)
    els = find_elements(node, name)
    if not els:
        raise PathError(400, f"{parent.path} has no element '{name}'")
    el = els[0]
    if len(els) > 1 or not el.is_array:
        raise PathError(422, f"{parent.path}.{name} is not a list; {op.type} works on lists")
    return container, node, el, f"{parent.path}.{name}"


def _split_last_name(ast: AST, rtype: str) -> tuple[AST | None, str]:
    """(the path before the last element name, that name); None for the root."""
    kind = ast.get("type")
    children: list[AST] = ast.get("children", [])
    if kind == "InvocationExpression" and children[1].get("type") == "MemberInvocation":
        return children[0], _name(children[1])
    if kind == "TermExpression":
        inv = children[0]["children"][0] if children[0].get("type") == "InvocationTerm" else {}
        if inv.get("type") == "MemberInvocation" and _name(inv) != rtype:
            return None, _name(inv)
    raise PathError(400, "the path of an insert or move names a list: it ends with the list's "
                         "element name (e.g. Patient.identifier)")


def _name(member: AST) -> str:
    text = str(member["children"][0].get("text", ""))
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


# -- values --------------------------------------------------------------------------------------


def _materialize(
    value: PatchValue, node: Node, name: str, path: str
) -> tuple[str, Any, Any]:
    """(JSON key, JSON value, `_key` part) for `value` as the element `name` of `node`."""
    els = find_elements(node, name)
    if not els:
        raise PathError(400, f"{path} has no element '{name}'")
    shown = f"{path}.{name}"
    if value.parts is not None:
        complex_els = [el for el in els if el.kind == COMPLEX]
        if len(complex_els) != 1:
            raise PathError(422, f"{shown} is not an element whose content can be given as "
                                 "parts; give it as a typed value")
        el = complex_els[0]
        assert el.node is not None
        return el.name, _build(value.parts, el.node, shown), None
    assert value.type is not None
    if len(els) > 1 or els[0].choice is not None:
        for el in els:
            if el.type == value.type:
                return el.name, value.json, value.ext
        types = ", ".join(el.type for el in choice_elements(node, els[0].choice or name))
        raise PathError(422, f"{shown} is a choice of {types}; a {value.type} does not fit")
    el = els[0]
    if not _fits(el, value.type):
        raise PathError(422, f"{shown} is a {el.type}; a {value.type} value does not fit "
                             f"({value.where})")
    return el.name, value.json, value.ext


def _build(parts: list[tuple[str, PatchValue]], node: Node, path: str) -> dict[str, Any]:
    """The object that parts describe (anonymous content, e.g. Patient.contact)."""
    obj: dict[str, Any] = {}
    for name, sub in parts:
        key, value, ext = _materialize(sub, node, name, path)
        el = node.elements[key]
        if el.is_array:
            _list_insert(obj, key, _list_len(obj, key), value, ext)
            continue
        if any(e.name in obj or "_" + e.name in obj for e in _same_element(node, el)):
            raise PathError(422, f"{path}.{name} is given twice but takes one value")
        obj[key] = value
        if ext is not None:
            obj["_" + key] = ext
    return obj


def _same_element(node: Node, el: Element) -> list[Element]:
    """`el` and, for a choice, its other types (one element in FHIRPath)."""
    return choice_elements(node, el.choice) if el.choice else [el]


def _fits(el: Element, vtype: str) -> bool:
    """Whether a value of type `vtype` may stand where `el` is: the same type, a resource for
    a Resource element, a primitive of the same JSON kind (its format is validated with the
    result), or a Quantity for one of Quantity's profiles."""
    if el.kind == RESOURCE:
        return vtype in registry().resource_types
    if el.type == vtype:
        return True
    if el.kind in (PRIMITIVE, XHTML) and vtype in registry().primitive_types:
        return any(el.type in fam and vtype in fam
                   for fam in (_STRINGS, _NUMBERS, frozenset({"boolean"})))
    return el.type in _QUANTITIES and vtype in _QUANTITIES


# -- lists and keys ------------------------------------------------------------------------------


def _list_len(obj: dict[str, Any], key: str) -> int:
    values, exts = obj.get(key), obj.get("_" + key)
    return max(len(values) if isinstance(values, list) else 0,
               len(exts) if isinstance(exts, list) else 0)


def _aligned(obj: dict[str, Any], key: str, with_ext: bool) -> tuple[list[Any], list[Any] | None]:
    """The value list and (when there is or will be one) the `_key` list, padded to one length."""
    n = _list_len(obj, key)
    values = obj.setdefault(key, [])
    values.extend([None] * (n - len(values)))
    exts = obj.get("_" + key)
    if exts is None and with_ext:
        exts = obj["_" + key] = []
    if exts is not None:
        exts.extend([None] * (n - len(exts)))
    return values, exts


def _list_insert(obj: dict[str, Any], key: str, i: int, value: Any, ext: Any) -> None:
    values, exts = _aligned(obj, key, ext is not None)
    values.insert(i, value)
    if exts is not None:
        exts.insert(i, ext)


def _list_set(obj: dict[str, Any], key: str, i: int, value: Any, ext: Any) -> None:
    values, exts = _aligned(obj, key, ext is not None)
    values[i] = value
    if exts is not None:
        exts[i] = ext


def _list_pop(obj: dict[str, Any], key: str, i: int) -> tuple[Any, Any]:
    values, exts = _aligned(obj, key, False)
    return values.pop(i), (exts.pop(i) if exts is not None else None)


def _rekey(obj: dict[str, Any], old: str, new: str, value: Any, ext: Any) -> None:
    """Replace `old` (and `_old`) by `new` (and `_new`) in place, keeping the key order."""
    items = list(obj.items())
    obj.clear()
    for k, v in items:
        if k == old:
            obj[new] = value
            if ext is not None:
                obj["_" + new] = ext
        elif k not in ("_" + old, new, "_" + new):
            obj[k] = v
    if old not in dict(items):  # a primitive that had only extensions
        obj[new] = value
        if ext is not None:
            obj["_" + new] = ext


def _tidy(obj: dict[str, Any]) -> None:
    """Remove what the operations left empty: FHIR JSON has no empty objects or arrays, an
    empty `_name` entry is a null (it keeps its array aligned) and a `_name` array of nulls
    says nothing (https://hl7.org/fhir/R4/json.html)."""
    for k in list(obj):
        v = obj[k]
        if isinstance(v, dict):
            _tidy(v)
            if not v:
                del obj[k]
        elif isinstance(v, list):
            kept: list[Any] = []
            for item in v:
                if isinstance(item, dict):
                    _tidy(item)
                    if not item:
                        if k.startswith("_"):
                            kept.append(None)
                        continue
                kept.append(item)
            if not kept or (k.startswith("_") and all(x is None for x in kept)):
                del obj[k]
            else:
                v[:] = kept
