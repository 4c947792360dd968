"""`$meta`, `$meta-add` and `$meta-delete`: profiles, tags and security labels
(https://hl7.org/fhir/R4/resource-operation-meta.html, #meta-add, #meta-delete).

At system and type level `$meta` lists what is in use, from the search index (`_tag`,
`_security`, `_profile`). `$meta-add` and `$meta-delete` write the changed resource as a new
version through the ordinary write path (validation, hooks, index rows), and only when something
changes; tags and labels are sets keyed by system+code, profiles by URL."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from fhir_server.store.base import StoredResource
from fhir_server.writes import check_resource, store_resource
from operations.parameters import Params
from operations.registry import OperationCall, operation
from resources import json_numbers

_CODED = ("tag", "security")


def _meta_of(stored: StoredResource) -> dict[str, Any]:
    assert stored.body is not None
    meta: dict[str, Any] = json_numbers.loads(stored.body).get("meta") or {}
    return meta


def _summary(call: OperationCall) -> dict[str, Any]:
    engine = call.ctx.search_engine
    q = call.ctx.tx or call.ctx.store
    meta: dict[str, Any] = {}
    profiles = [uri for _, uri in engine.distinct_values(q, call.res_type, "_profile")]
    if profiles:
        meta["profile"] = profiles
    for field in _CODED:
        codings = [{"system": s, "code": c} if s else {"code": c}
                   for s, c in engine.distinct_values(q, call.res_type, f"_{field}")]
        if codings:
            meta[field] = codings
    return meta


def _answer(meta: dict[str, Any]) -> Params:
    return Params().add("return", meta)


@operation("OperationDefinition-Resource-meta", needs=("{type}.r",))
def meta(call: OperationCall) -> Params:
    """The meta of one resource, or a summary of what is in use for a type or the system."""
    if call.level == "instance":
        return _answer(_meta_of(call.target()))
    return _answer(_summary(call))


def _key(field: str, item: Any) -> Any:
    if field == "profile":
        return item
    if not isinstance(item, dict):
        return None
    return (item.get("system"), item.get("code"))


def _given_meta(call: OperationCall) -> dict[str, Any]:
    given = call.params.get("meta")
    assert isinstance(given, dict)
    for field in ("profile", *_CODED):
        if field in given and not isinstance(given[field], list):
            raise FhirError.of(400, "structure", f"meta.{field} must be an array",
                               f"Parameters.parameter.valueMeta.{field}")
    return given


def _change(call: OperationCall, adding: bool) -> Params:
    given = _given_meta(call)
    with call.ctx.writing() as tx:
        stored = call.target(tx)
        assert stored.body is not None
        resource = json_numbers.loads(stored.body)
        meta = dict(resource.get("meta") or {})
        changed = False
        for field in ("profile", *_CODED):
            have = list(meta.get(field) or [])
            keys = {_key(field, x) for x in have}
            for item in given.get(field) or []:
                k = _key(field, item)
                if adding and k not in keys:
                    have.append(item)
                    keys.add(k)
                    changed = True
                elif not adding and k in keys:
                    have = [x for x in have if _key(field, x) != k]
                    keys.discard(k)
                    changed = True
            if have:
                meta[field] = have
            else:
                meta.pop(field, None)
        if not changed:
            return _answer(_meta_of(stored))
        resource["meta"] = meta
        check_resource(resource, call.res_type)
        written = store_resource(call.ctx, tx, resource, stored.res_id, stored, "PATCH")
    return _answer(_meta_of(written))


@operation("OperationDefinition-Resource-meta-add", affects_state=True, needs=("{type}.u",))
def meta_add(call: OperationCall) -> Params:
    """Add profiles, tags and security labels (a new version, if anything was new)."""
    return _change(call, adding=True)


@operation("OperationDefinition-Resource-meta-delete", affects_state=True, needs=("{type}.u",))
def meta_delete(call: OperationCall) -> Params:
    """Remove profiles, tags and security labels (a new version, if any was present)."""
    return _change(call, adding=False)
