"""`ValueSet/$validate-code` (https://hl7.org/fhir/R4/valueset-operation-validate-code.html):
whether a code (`code`+`system`, `coding`, or any coding of a `codeableConcept`) is in a value
set. `result` says so, `message` why not, and `display` gives the code's display. A display that
is not the code's display (nor one of its designations) leaves `result` true with a warning in
`message`, as the R4 definition's `display` parameter describes ("the server may choose to
return a recommended display")."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from operations.parameters import Params
from operations.registry import OperationCall, operation
from operations.terminology import cannot_expand, coded, terminology, value_set
from resources.value_sets import CannotExpand, Concept

Coding = tuple[str | None, str, str | None]  # system, code, display


def _codings(call: OperationCall) -> list[Coding]:
    params = call.params
    given = [n for n in ("code", "coding", "codeableConcept") if n in params]
    if len(given) != 1:
        raise FhirError.of(400, "required" if not given else "invalid",
                           "$validate-code needs exactly one of code (with system), coding and "
                           "codeableConcept", given[1] if given else "code")
    if given[0] == "code":
        return [(params.get("system"), str(params.get("code")), params.get("display"))]
    if params.get("system") or params.get("display"):
        raise FhirError.of(400, "invalid", "system and display go with code; a coding or "
                           "codeableConcept carries its own", "system")
    if given[0] == "coding":
        raw = [params.get("coding")]
    else:
        raw = params.get("codeableConcept").get("coding") or []
        if not isinstance(raw, list):
            raise FhirError.of(400, "structure", "codeableConcept.coding must be an array",
                               "codeableConcept.coding")
    out: list[Coding] = []
    for i, c in enumerate(raw):
        system, code, display = coded(c, given[0], f"{given[0]}.coding[{i}]"
                                      if given[0] == "codeableConcept" else "coding")
        if code:
            out.append((system, code, display))
    if not out:
        raise FhirError.of(400, "required", f"The {given[0]} given has no code", given[0])
    return out


def _names(c: Concept) -> set[str]:
    names = {d.get("value") for d in c.designation if isinstance(d, dict)}
    if c.display:
        names.add(c.display)
    return {n for n in names if n}


def _shown(system: str | None, code: str) -> str:
    return f"{system}|{code}" if system else code


@operation("OperationDefinition-ValueSet-validate-code", needs=("ValueSet.r",))
def validate_code(call: OperationCall) -> Params:
    """Validate a code against the instance, the `valueSet` given or the one `url` names."""
    codings = _codings(call)
    term = terminology(call)
    vs = value_set(call, term)
    name = vs.get("url") or f"ValueSet/{vs.get('id', '(given)')}"
    try:
        concepts = term.expand(vs)
    except CannotExpand as exc:
        raise cannot_expand(exc, vs) from exc
    index: dict[tuple[str, str], Concept] = {(c.system, c.code): c for c in concepts}
    by_code: dict[str, list[Concept]] = {}
    for c in concepts:
        by_code.setdefault(c.code, []).append(c)
    misses: list[str] = []
    for system, code, display in codings:
        found: Any = index.get((system, code)) if system else (
            by_code.get(code, [None])[0])
        if found is None:
            misses.append(_shown(system, code))
            continue
        if call.params.get("abstract") is False and found.abstract:
            misses.append(f"{_shown(found.system, code)} (abstract, not allowed here)")
            continue
        out = Params().add("result", True)
        if display and found.display is not None and display not in _names(found):
            out.add("message", f"Warning: the display '{display}' is not the display of "
                    f"{_shown(found.system, code)}, which is '{found.display}'")
        if found.display is not None:
            out.add("display", found.display)
        return out
    listed = ", ".join(misses)
    return (Params().add("result", False)
            .add("message", f"The code {listed} is not in the value set {name}"))
