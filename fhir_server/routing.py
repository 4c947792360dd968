"""Which interaction a request is: https://hl7.org/fhir/R4/http.html (summary table)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_server.errors import FhirError
from resources.types import is_resource_type

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Route:
    """A parsed path: what the interaction applies to."""

    interaction: str
    res_type: str | None = None
    res_id: str | None = None
    version: str | None = None
    compartment_type: str | None = None  # the resource type searched (or operated on) inside
    # a compartment: res_type/res_id name the compartment
    operation: str | None = None


def valid_id(value: str) -> bool:
    """A FHIR logical id (https://hl7.org/fhir/R4/datatypes.html#id)."""
    return _ID.fullmatch(value) is not None


def _type(name: str) -> str:
    if not is_resource_type(name):
        raise FhirError.of(404, "not-supported", f"Unknown resource type '{name}'")
    return name


def route(method: str, path: str) -> Route:
    """Map method and path (below the base) to a Route, or raise 404/405."""
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    m = "GET" if method == "HEAD" else method
    n = len(parts)
    if any(p.startswith("$") for p in parts):
        op_at = next(i for i, p in enumerate(parts) if p.startswith("$"))
        if op_at == n - 1 and op_at <= 2:
            rt = _type(parts[0]) if op_at >= 1 else None
            rid = parts[1] if op_at == 2 else None
            return Route("operation", rt, rid, operation=parts[op_at][1:])
        if op_at == n - 1 == 3:  # [type]/[id]/[type]/$op: a type-level operation inside a
            # compartment (as fhirpy calls Patient/[id]/Observation/$lastn)
            return Route("operation", _type(parts[0]), _id(parts[1]),
                         compartment_type=_type(parts[2]), operation=parts[3][1:])
    if n == 0:
        if m == "POST":
            return Route("bundle")
        if m == "GET":
            return Route("search-system")
    elif n == 1 and parts[0] == "metadata" and m == "GET":
        return Route("capabilities")
    elif n == 1 and parts[0] == "_history" and m == "GET":
        return Route("history-system")
    elif n == 1 and parts[0] == "_search" and m == "POST":
        return Route("search-system")
    elif n == 1:
        rt = _type(parts[0])
        table = {"GET": "search-type", "POST": "create", "PUT": "conditional-update",
                 "DELETE": "conditional-delete", "PATCH": "conditional-patch"}
        if m in table:
            return Route(table[m], rt)
    elif n == 2 and parts[1] == "_search" and m == "POST":
        return Route("search-type", _type(parts[0]))
    elif n == 2 and parts[1] == "_history" and m == "GET":
        return Route("history-type", _type(parts[0]))
    elif n == 2:
        rt = _type(parts[0])
        table = {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
        if m in table:
            return Route(table[m], rt, _id(parts[1]))
    elif n == 3 and parts[2] == "_history" and m == "GET":
        return Route("history-instance", _type(parts[0]), _id(parts[1]))
    elif n == 3 and m == "GET":
        comp = "*" if parts[2] == "*" else _type(parts[2])
        return Route("search-compartment", _type(parts[0]), _id(parts[1]), compartment_type=comp)
    elif n == 4 and parts[2] == "_history" and m == "GET":
        return Route("vread", _type(parts[0]), _id(parts[1]), version=parts[3])
    raise FhirError.of(
        405 if n else 404, "not-supported", f"{method} is not supported on '/{path.strip('/')}'"
    )


def _id(value: str) -> str:
    if not valid_id(value):
        raise FhirError.of(400, "invalid", f"'{value}' is not a valid resource id")
    return value
