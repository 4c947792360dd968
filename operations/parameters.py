"""Operation parameters in and out, checked against the OperationDefinition.

Input comes from a Parameters resource in the POST body, from the URL query (GET, or POST
for primitive parameters), or, for an operation whose input is one resource, from that resource
posted directly. Output is a Parameters resource, or the resource itself when the only output
is a resource named `return` (https://hl7.org/fhir/R4/operations.html#request,
https://hl7.org/fhir/R4/operations.html#response, https://hl7.org/fhir/R4/parameters.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.negotiation import FHIR_JSON, JSON_TYPES
from fhir_server.request import FhirRequest
from resources import json_numbers
from resources.types import PRIMITIVE_CHECKERS, is_resource_type

_FORMAT_PARAMS = {"_format", "_pretty", "_summary", "_elements"}
_ANY_VALUE = {"Any", "Type", "Element", "*"}
_INTEGERS = {"integer", "positiveInt", "unsignedInt"}


@dataclass(frozen=True)
class ParamSpec:
    """One OperationDefinition.parameter (in or out)."""

    name: str
    use: str
    min: int
    max: int | None  # None: "*"
    type: str | None
    parts: tuple[ParamSpec, ...] = ()

    @property
    def is_resource(self) -> bool:
        return self.type is not None and (self.type in ("Resource", "DomainResource")
                                          or is_resource_type(self.type))

    @property
    def is_primitive(self) -> bool:
        return self.type in PRIMITIVE_CHECKERS


def specs(definition: dict[str, Any], use: str) -> dict[str, ParamSpec]:
    """The `use` ("in" or "out") parameters of an OperationDefinition, by name."""
    return {p.name: p for p in (_spec(raw) for raw in definition.get("parameter", []))
            if p.use == use}


def _spec(raw: dict[str, Any]) -> ParamSpec:
    mx = raw.get("max", "1")
    return ParamSpec(
        name=raw["name"], use=raw["use"], min=int(raw.get("min", 0)),
        max=None if mx == "*" else int(mx), type=raw.get("type"),
        parts=tuple(_spec(p) for p in raw.get("part", [])),
    )


@dataclass
class Params:
    """Parsed parameter values by name, in order. A primitive's value is its JSON value
    (str, int, bool, float); a complex value is its JSON object; a resource parameter holds
    the resource; a parameter with parts holds a nested Params."""

    values: dict[str, list[Any]] = field(default_factory=dict)
    search: list[tuple[str, str]] = field(default_factory=list)  # search params, when allowed

    def add(self, name: str, value: Any) -> Params:
        self.values.setdefault(name, []).append(value)
        return self

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of `name`, or `default`."""
        vals = self.values.get(name)
        return vals[0] if vals else default

    def all(self, name: str) -> list[Any]:
        """Every value of `name` (repeating parameters)."""
        return list(self.values.get(name, []))

    def __contains__(self, name: str) -> bool:
        return bool(self.values.get(name))


def _bad(message: str, expression: str | None = None, status: int = 400) -> FhirError:
    return FhirError.of(status, "invalid", message, expression)


def parse_input(
    definition: dict[str, Any], req: FhirRequest, method: str, allow_search: bool = False
) -> Params:
    """The input parameters of one invocation, checked for names, types and cardinality."""
    in_specs = specs(definition, "in")
    code = definition["code"]
    params = Params()
    body = req.body.strip() if method == "POST" else b""
    if body:
        _from_body(code, in_specs, req, body, params)
    for name, value in req.query:
        if name in _FORMAT_PARAMS:
            continue
        spec = in_specs.get(name)
        if spec is None:
            if allow_search:
                params.search.append((name, value))
                continue
            raise _bad(f"${code} has no parameter '{name}'", name)
        if not spec.is_primitive:
            raise _bad(f"${code} parameter '{name}' is of type {spec.type or 'parts'} and "
                       "cannot be given in the URL; POST a Parameters resource", name)
        params.add(name, _primitive_from_text(code, spec, value))
    _check_cardinality(code, in_specs, params, "")
    return params


def _from_body(
    code: str, in_specs: dict[str, ParamSpec], req: FhirRequest, body: bytes, params: Params
) -> None:
    ctype = (req.header("content-type") or FHIR_JSON).split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise FhirError.of(415, "not-supported",
                           f"${code} takes a Parameters resource as {FHIR_JSON}, not '{ctype}'")
    try:
        value = json_numbers.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or "resourceType" not in value:
        raise FhirError.of(400, "structure", "The body must be a FHIR resource (Parameters)")
    if value["resourceType"] != "Parameters":
        resource_specs = [s for s in in_specs.values() if s.is_resource]
        if len(resource_specs) != 1:
            raise _bad(f"${code} takes a Parameters resource, not a {value['resourceType']}",
                       "resourceType")
        spec = resource_specs[0]
        _check_resource_type(code, spec, value, spec.name)
        params.add(spec.name, value)
        return
    raw = value.get("parameter", [])
    if not isinstance(raw, list):
        raise FhirError.of(400, "structure", "Parameters.parameter must be an array",
                           "Parameters.parameter")
    _parse_parts(code, in_specs, raw, params, "Parameters.parameter")


def _parse_parts(
    code: str, by_name: dict[str, ParamSpec], raw: list[Any], into: Params, path: str
) -> None:
    for i, p in enumerate(raw):
        at = f"{path}[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise FhirError.of(400, "structure", f"{at} needs a name", at)
        spec = by_name.get(p["name"])
        if spec is None:
            raise _bad(f"${code} has no parameter '{p['name']}'", at)
        into.add(spec.name, _value(code, spec, p, at))


def _value(code: str, spec: ParamSpec, p: dict[str, Any], at: str) -> Any:
    """The value of one Parameters.parameter entry for `spec`."""
    if spec.parts:
        nested = Params()
        part = p.get("part", [])
        if not isinstance(part, list):
            raise FhirError.of(400, "structure", f"{at}.part must be an array", f"{at}.part")
        _parse_parts(code, {s.name: s for s in spec.parts}, part, nested, f"{at}.part")
        _check_cardinality(code, {s.name: s for s in spec.parts}, nested, f"{spec.name}.")
        return nested
    if spec.is_resource:
        res = p.get("resource")
        if not isinstance(res, dict):
            raise _bad(f"${code} parameter '{spec.name}' takes a resource "
                       f"({spec.type}) in parameter.resource", at)
        _check_resource_type(code, spec, res, at)
        return res
    keys = [k for k in p if k.startswith("value")]
    if len(keys) != 1:
        raise _bad(f"${code} parameter '{spec.name}' needs exactly one value[x]", at)
    key = keys[0]
    if spec.type and spec.type not in _ANY_VALUE:
        want = "value" + spec.type[0].upper() + spec.type[1:]
        if key != want:
            raise _bad(f"${code} parameter '{spec.name}' is of type {spec.type} ({want}), "
                       f"not {key}", f"{at}.{key}")
    value = p[key]
    type_name = key[5].lower() + key[6:]
    checker = PRIMITIVE_CHECKERS.get(type_name)
    if checker is not None:
        problem = checker(value)
        if problem:
            raise _bad(f"${code} parameter '{spec.name}': {problem}", f"{at}.{key}")
    elif not isinstance(value, dict):
        raise _bad(f"${code} parameter '{spec.name}': {key} must be an object", f"{at}.{key}")
    return value


def _check_resource_type(code: str, spec: ParamSpec, res: dict[str, Any], at: str) -> None:
    rt = res.get("resourceType")
    if not isinstance(rt, str) or not is_resource_type(rt):
        raise _bad(f"${code} parameter '{spec.name}' holds no known resource type ({rt!r})", at)
    if spec.type not in ("Resource", "DomainResource") and rt != spec.type:
        raise _bad(f"${code} parameter '{spec.name}' takes a {spec.type}, not a {rt}", at)


def _primitive_from_text(code: str, spec: ParamSpec, text: str) -> Any:
    """A URL query value typed as the parameter's primitive type."""
    assert spec.type is not None
    value: Any = text
    if spec.type in _INTEGERS:
        try:
            value = int(text)
        except ValueError:
            raise _bad(f"${code} parameter '{spec.name}' must be an integer, not '{text}'",
                       spec.name) from None
    elif spec.type == "decimal":
        try:
            value = float(text)
        except ValueError:
            raise _bad(f"${code} parameter '{spec.name}' must be a decimal, not '{text}'",
                       spec.name) from None
    elif spec.type == "boolean":
        if text not in ("true", "false"):
            raise _bad(f"${code} parameter '{spec.name}' must be true or false, not '{text}'",
                       spec.name)
        value = text == "true"
    problem = PRIMITIVE_CHECKERS[spec.type](value)
    if problem:
        raise _bad(f"${code} parameter '{spec.name}': {problem}", spec.name)
    return value


def _check_cardinality(
    code: str, by_name: dict[str, ParamSpec], params: Params, prefix: str
) -> None:
    for spec in by_name.values():
        n = len(params.values.get(spec.name, []))
        if n < spec.min:
            raise FhirError.of(400, "required",
                               f"${code} needs the parameter '{prefix}{spec.name}'",
                               f"{prefix}{spec.name}")
        if spec.max is not None and n > spec.max:
            raise _bad(f"${code} takes '{prefix}{spec.name}' at most {spec.max} time(s), "
                       f"not {n}", f"{prefix}{spec.name}")


def to_output(definition: dict[str, Any], out: Params) -> dict[str, Any]:
    """The answer for output values: the resource itself when the definition's only output is
    a resource named `return`, else a Parameters resource."""
    out_specs = specs(definition, "out")
    ret = out_specs.get("return")
    if len(out_specs) == 1 and ret is not None and ret.is_resource and "return" in out:
        value = out.get("return")
        assert isinstance(value, dict)
        return value
    return {"resourceType": "Parameters", "parameter": _entries(out_specs, out)}


def _entries(by_name: dict[str, ParamSpec], out: Params) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name, values in out.values.items():
        spec = by_name.get(name)
        for v in values:
            entries.append(_entry(name, spec, v))
    return entries


def _entry(name: str, spec: ParamSpec | None, value: Any) -> dict[str, Any]:
    if isinstance(value, Params):
        sub = {s.name: s for s in spec.parts} if spec else {}
        return {"name": name, "part": _entries(sub, value)}
    if spec is not None and spec.is_resource:
        return {"name": name, "resource": value}
    if spec is None or spec.type is None or spec.type in _ANY_VALUE:
        if isinstance(value, dict) and "resourceType" in value:
            return {"name": name, "resource": value}
        if isinstance(value, tuple) and len(value) == 2:  # (type, value) for Any outputs
            t, v = value
            return {"name": name, f"value{t[0].upper()}{t[1:]}": v}
        raise TypeError(f"output parameter {name!r} needs a declared type or (type, value)")
    return {"name": name, f"value{spec.type[0].upper()}{spec.type[1:]}": value}
