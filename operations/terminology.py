"""What `$expand`, `$lookup` and `$validate-code` share: the server's terminology (the R4 code
systems and value sets it ships, and the CodeSystem/ValueSet resources stored in it, found by
canonical url; https://hl7.org/fhir/R4/terminology-service.html) and the value set an
invocation names (the instance, `url`, or a `valueSet` given inline)."""

from __future__ import annotations

from typing import Any

from fhir_server.access import restrictions
from fhir_server.errors import FhirError, Issue
from operations.registry import OperationCall
from resources import json_numbers
from resources.validation import validate_resource
from resources.value_sets import CannotExpand, Terminology


def terminology(call: OperationCall) -> Terminology:
    """A Terminology that finds stored CodeSystems and ValueSets (those the caller may see)
    by url before the shipped R4 ones."""
    ctx = call.ctx
    q = ctx.tx or ctx.store
    allowed = restrictions(ctx, call.req, "search")

    def resolve(res_type: str, url: str) -> dict[str, Any] | None:
        found = ctx.search_engine.find_ids(q, res_type, [("url", url)], limit=1,
                                           restriction=allowed)
        if not found:
            return None
        stored = q.read(res_type, found[0][1])
        if stored is None or stored.body is None:
            return None
        value: dict[str, Any] = json_numbers.loads(stored.body)
        return value

    return Terminology(resolve)


def value_set(call: OperationCall, term: Terminology) -> dict[str, Any]:
    """The ValueSet the operation works on: the instance, the `valueSet` given, or the one
    `url` names; 400 for none or several, 404 for an unknown url."""
    given = [n for n in ("url", "valueSet") if n in call.params]
    code = call.op.code
    if call.level == "instance":
        if given:
            raise FhirError.of(400, "invalid", f"${code} on ValueSet/{call.res_id} takes no "
                               f"{' or '.join(given)}: the value set is the instance", given[0])
        stored = call.target()
        assert stored.body is not None
        vs: dict[str, Any] = json_numbers.loads(stored.body)
    elif len(given) != 1:
        raise FhirError.of(400, "required" if not given else "invalid",
                           f"${code} needs exactly one of 'url' and 'valueSet' at type level "
                           "(or invoke it on a ValueSet instance)", "url")
    elif given[0] == "valueSet":
        vs = call.params.get("valueSet")
        problems = [p for p in validate_resource(vs) if p.severity in ("error", "fatal")]
        if problems:
            raise FhirError(400, [Issue(p.severity, p.code, f"The valueSet given: {p.diagnostics}",
                                        (p.expression,)) for p in problems])
    else:
        url = str(call.params.get("url"))
        found = term.value_set(url)
        if found is None:
            raise FhirError.of(404, "not-found", f"The ValueSet {url} is not known to this "
                               "server", "url")
        vs = found
    version = call.params.get("valueSetVersion")
    if version is not None and vs.get("version") != version:
        raise FhirError.of(404, "not-found", f"Version {version} of ValueSet {vs.get('url')} is "
                           f"not known (this server has {vs.get('version') or 'no version'})",
                           "valueSetVersion")
    return vs


def coded(value: Any, name: str, where: str) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of a Coding parameter; 400 if they are not strings."""
    if not isinstance(value, dict):
        raise FhirError.of(400, "structure", f"{name} must be a Coding", where)
    out = []
    for key in ("system", "code", "display"):
        v = value.get(key)
        if v is not None and not isinstance(v, str):
            raise FhirError.of(400, "structure", f"{name}.{key} must be a string", f"{where}.{key}")
        out.append(v)
    return out[0], out[1], out[2]


def cannot_expand(exc: CannotExpand, vs: dict[str, Any]) -> FhirError:
    """422: a value set whose content the server cannot enumerate."""
    name = vs.get("url") or vs.get("id") or "given"
    return FhirError.of(422, "not-supported", f"The ValueSet {name} cannot be expanded: {exc}")
