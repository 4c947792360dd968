"""`ValueSet/$expand` (https://hl7.org/fhir/R4/valueset-operation-expand.html): the codes of a
value set as ValueSet.expansion (https://hl7.org/fhir/R4/valueset.html#expansion), filtered
(`filter`: case-insensitive substring of display or code) and paged (`offset`, `count`), with
`total` and the parameters that shaped it echoed in expansion.parameter. A value set the server
cannot enumerate (a filter on SNOMED CT, all of LOINC) is a 422 OperationOutcome."""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.timeutil import now_us, to_instant
from operations.parameters import Params
from operations.registry import OperationCall, operation
from operations.terminology import cannot_expand, terminology, value_set
from resources.value_sets import CannotExpand, Concept

_ECHO = (("filter", "valueString"), ("offset", "valueInteger"), ("count", "valueInteger"),
         ("activeOnly", "valueBoolean"), ("includeDesignations", "valueBoolean"),
         ("excludeNested", "valueBoolean"), ("displayLanguage", "valueCode"))
_METADATA = ("id", "url", "version", "name", "title", "status", "experimental", "date")


def _matches(c: Concept, text: str) -> bool:
    return text in c.code.lower() or (c.display is not None and text in c.display.lower())


def _contains(c: Concept, designations: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"system": c.system}
    if c.version:
        out["version"] = c.version
    if c.abstract:
        out["abstract"] = True
    if c.inactive:
        out["inactive"] = True
    out["code"] = c.code
    if c.display is not None:
        out["display"] = c.display
    if designations and c.designation:
        out["designation"] = list(c.designation)
    return out


def expansion(vs: dict[str, Any], concepts: list[Concept], params: Params) -> dict[str, Any]:
    """The ValueSet answered: `vs`'s metadata and the expansion of `concepts` per `params`."""
    for name in ("offset", "count"):
        value = params.get(name)
        if value is not None and value < 0:
            raise FhirError.of(400, "invalid", f"$expand parameter '{name}' must not be negative",
                               name)
    text = params.get("filter")
    if text:
        concepts = [c for c in concepts if _matches(c, str(text).lower())]
    if params.get("activeOnly"):
        concepts = [c for c in concepts if not c.inactive]
    excluded = {s.split("|", 1)[0] for s in params.all("exclude-system")}
    if excluded:
        concepts = [c for c in concepts if c.system not in excluded]
    offset = params.get("offset") or 0
    count = params.get("count")
    page = concepts[offset:] if count is None else concepts[offset:offset + count]
    exp: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": to_instant(now_us()),
        "total": len(concepts),
        "offset": offset,
    }
    echoed = [{"name": name, key: params.get(name)} for name, key in _ECHO if name in params]
    echoed += [{"name": "exclude-system", "valueCanonical": s}
               for s in params.all("exclude-system")]
    if echoed:
        exp["parameter"] = echoed
    designations = bool(params.get("includeDesignations"))
    if page:
        exp["contains"] = [_contains(c, designations) for c in page]
    out: dict[str, Any] = {"resourceType": "ValueSet"}
    out.update({k: vs[k] for k in _METADATA if k in vs})
    out.setdefault("status", "active")
    out["expansion"] = exp
    return out


@operation("OperationDefinition-ValueSet-expand", needs=("ValueSet.r",))
def expand(call: OperationCall) -> Params:
    """Expand the instance, the `valueSet` given or the one `url` names."""
    term = terminology(call)
    vs = value_set(call, term)
    try:
        concepts = term.expand(vs)
    except CannotExpand as exc:
        raise cannot_expand(exc, vs) from exc
    return Params().add("return", expansion(vs, concepts, call.params))
