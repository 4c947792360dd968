"""The operations registry: every `$operation` the server answers, with its OperationDefinition.

Each operation module registers a handler with `@operation(...)`, naming the OperationDefinition
it implements (a file under operations/definitions/: the official R4 one where the spec has one,
our own for custom operations). Routing, parameter parsing, the CapabilityStatement
(`rest.resource.operation`, `rest.operation`) and `GET [base]/OperationDefinition/[id]` all come
from this registry (https://hl7.org/fhir/R4/operations.html)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import gone, not_found
from fhir_server.routing import Route
from fhir_server.store.base import StoredResource, StoreTx
from operations.parameters import Params, parse_input, to_output
from resources.compartments import compartment_params, is_compartment_type

DEFINITIONS = Path(__file__).resolve().parent / "definitions"
CANONICAL_BASE = "https://telefhir.org/fhir"
"""The base of the canonical URLs of telefhir's own definitions (OperationDefinitions, code
systems): one base we own, as the brief asks."""


@dataclass(frozen=True)
class OperationCall:
    """One invocation: the server context, the HTTP request, where it was invoked and its
    parsed input parameters."""

    ctx: Context
    req: FhirRequest
    op: Operation
    res_type: str | None  # None at system level
    res_id: str | None  # set at instance level
    params: Params
    compartment: tuple[str, str] | None = None  # Patient/[id]/Observation/$lastn: (Patient, id)

    @property
    def level(self) -> str:
        """system | type | instance."""
        return "instance" if self.res_id else "type" if self.res_type else "system"

    def target(self, tx: StoreTx | None = None) -> StoredResource:
        """The current version of the instance the operation was invoked on (read in `tx`,
        which locks it, when given); 404 if unknown, 410 if deleted."""
        assert self.res_type and self.res_id
        stored = (tx or self.ctx.tx or self.ctx.store).read(self.res_type, self.res_id)
        if stored is None:
            raise not_found(self.res_type, self.res_id)
        if stored.deleted:
            raise gone(stored)
        return stored


Handler = Callable[[OperationCall], FhirResponse | dict[str, Any] | Params]


@dataclass(frozen=True)
class Operation:
    """A registered operation: its code (without `$`), OperationDefinition and handler.

    `needs` says what the caller must be allowed to do, as SMART-style `Type.permissions`
    strings (`{type}` stands for the type the operation is invoked on), e.g.
    ("Encounter.cu", "Appointment.r"); authorization hooks read it. `search_params` marks
    operations that also take the search parameters of their type (`Observation/$lastn`)."""

    code: str
    definition: dict[str, Any]
    handler: Handler
    affects_state: bool
    needs: tuple[str, ...] = ()
    search_params: bool = False

    @property
    def definition_id(self) -> str:
        return str(self.definition["id"])

    @property
    def canonical(self) -> str:
        return str(self.definition["url"])

    def applies_to(self, res_type: str | None, instance: bool) -> bool:
        """Whether the definition allows invocation at this level on this type."""
        d = self.definition
        if res_type is None:
            return bool(d.get("system"))
        types = d.get("resource") or []
        if res_type not in types and "Resource" not in types and "DomainResource" not in types:
            return False
        return bool(d.get("instance") if instance else d.get("type"))


_OPERATIONS: dict[str, list[Operation]] = {}


def load_definition(name: str) -> dict[str, Any]:
    """An OperationDefinition from operations/definitions/ by file stem
    (e.g. "OperationDefinition-Resource-validate")."""
    path = DEFINITIONS / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("resourceType") != "OperationDefinition":
        raise ValueError(f"{path} is not an OperationDefinition")
    return data


def operation(
    definition: str,
    *,
    affects_state: bool | None = None,
    needs: tuple[str, ...] = (),
    search_params: bool = False,
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of the OperationDefinition in
    operations/definitions/`definition`.json."""

    def register(fn: Handler) -> Handler:
        d = load_definition(definition)
        state = bool(d.get("affectsState")) if affects_state is None else affects_state
        op = Operation(str(d["code"]), d, fn, state, needs, search_params)
        ops = _OPERATIONS.setdefault(op.code, [])
        if any(o.definition_id == op.definition_id for o in ops):
            raise ValueError(f"OperationDefinition {op.definition_id} registered twice")
        ops.append(op)
        return fn

    return register


@cache
def _load_modules() -> None:
    """Import every module of the operations package once, so that each registers itself."""
    import operations

    skip = {"registry", "parameters"}
    for info in pkgutil.walk_packages(operations.__path__, "operations."):
        if info.name.rsplit(".", 1)[-1] not in skip:
            importlib.import_module(info.name)


def all_operations() -> list[Operation]:
    """Every registered operation, ordered by code then definition id."""
    _load_modules()
    return sorted((o for ops in _OPERATIONS.values() for o in ops),
                  key=lambda o: (o.code, o.definition_id))


def find(code: str, res_type: str | None, instance: bool) -> Operation:
    """The operation `$code` at this level, or a 404/400 OperationOutcome naming it."""
    _load_modules()
    candidates = _OPERATIONS.get(code, [])
    for op in candidates:
        if op.applies_to(res_type, instance):
            return op
    where = (f"{res_type}/[id]" if instance else res_type) if res_type else "the system level"
    if not candidates:
        raise FhirError.of(404, "not-supported", f"Operation ${code} is not known to this server")
    levels = sorted({f"{lvl}" for o in candidates for lvl in _levels(o)})
    raise FhirError.of(
        400, "not-supported",
        f"Operation ${code} cannot be invoked on {where}; it is defined for {', '.join(levels)}",
    )


def _levels(op: Operation) -> list[str]:
    d = op.definition
    types = "|".join(d.get("resource") or [])
    out = []
    if d.get("system"):
        out.append("[base]")
    if d.get("type"):
        out.append(f"[{types}]")
    if d.get("instance"):
        out.append(f"[{types}]/[id]")
    return out


def definition(def_id: str) -> dict[str, Any] | None:
    """The OperationDefinition with this id, or None."""
    for op in all_operations():
        if op.definition_id == def_id:
            return op.definition
    return None


def invoke(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """Run `[base]/[type]/[id]/$op` (or `[type]/[id]/[type]/$op`, inside a compartment, for an
    operation that takes search parameters): find the operation, check the method, parse its
    parameters, run the before_operation hooks and the handler, and shape the answer."""
    assert route.operation is not None
    res_type, res_id = route.res_type, route.res_id
    compartment: tuple[str, str] | None = None
    if route.compartment_type is not None:  # [type]/[id]/[type]/$op
        assert res_type is not None and res_id is not None
        compartment = (res_type, res_id)
        res_type, res_id = route.compartment_type, None
    op = find(route.operation, res_type, res_id is not None)
    if compartment is not None and not (op.search_params and is_compartment_type(compartment[0])
                                        and compartment_params(compartment[0], res_type or "")):
        raise FhirError.of(
            400, "not-supported",
            f"${op.code} cannot be invoked inside the {compartment[0]} compartment: only "
            f"operations that take the search parameters of a type in it can")
    method = "GET" if req.method == "HEAD" else req.method
    if method not in ("GET", "POST"):
        raise FhirError.of(405, "not-supported",
                           f"Operations are invoked with POST (or GET), not {req.method}")
    if method == "GET" and op.affects_state:
        raise FhirError.of(405, "not-supported",
                           f"${op.code} changes data: invoke it with POST, not GET")
    params = parse_input(op.definition, req, method, allow_search=op.search_params)
    call = OperationCall(ctx, req, op, res_type, res_id, params, compartment)
    ctx.hooks.run("before_operation", ctx, req, call)
    result = op.handler(call)
    if isinstance(result, FhirResponse):
        return result
    if isinstance(result, Params):
        return FhirResponse(200, resource=to_output(op.definition, result))
    return FhirResponse(200, resource=result)


def capability_operations(res_type: str | None) -> list[dict[str, str]]:
    """CapabilityStatement `operation` entries: for a resource type (type and instance level
    operations on it) or, with None, the system-level ones."""
    out: list[dict[str, str]] = []
    for op in all_operations():
        d = op.definition
        if res_type is None:
            ok = bool(d.get("system"))
        else:
            types = d.get("resource") or []
            ok = (res_type in types or "Resource" in types) and bool(
                d.get("type") or d.get("instance"))
        if ok and not any(e["name"] == op.code for e in out):
            out.append({"name": op.code, "definition": op.canonical})
    return out


class _Router:
    """The registry as the dispatcher sees it (fhir_server.context.OperationRouter)."""

    def invoke(self, ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
        return invoke(ctx, req, route)

    def definition(self, def_id: str) -> dict[str, Any] | None:
        return definition(def_id)


def install(ctx: Context) -> None:
    """Plugin entry point: route `$operations` of this context through the registry."""
    ctx.operations = _Router()
