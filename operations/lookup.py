"""`CodeSystem/$lookup` (https://hl7.org/fhir/R4/codesystem-operation-lookup.html): the name,
version, display, designations and properties of one code (`system`+`code`, or `coding`) in a
code system the server holds. Properties are `parent` and `child` from the hierarchy, `definition`,
`inactive` and the concept's own properties (https://hl7.org/fhir/R4/codesystem.html#properties);
`property` limits them. An unknown code system, version or code is a 404 OperationOutcome."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from operations.parameters import Params
from operations.registry import OperationCall, operation
from operations.terminology import coded, terminology
from resources.value_sets import CodeSystemIndex


def _coded(call: OperationCall) -> tuple[str, str, str | None]:
    """(system, code, version) from code+system or coding; 400 if neither or both."""
    params = call.params
    coding = params.get("coding")
    if coding is not None and "code" in params:
        raise FhirError.of(400, "invalid", "$lookup takes either code (with system) or coding, "
                           "not both", "coding")
    if coding is not None:
        system, code, _ = coded(coding, "coding", "coding")
        version = coding.get("version") if isinstance(coding.get("version"), str) else None
        where = "coding"
    else:
        system, code, version = params.get("system"), params.get("code"), None
        where = "code"
    if not code:
        raise FhirError.of(400, "required", "$lookup needs a code (code and system, or coding)",
                           where)
    if not system:
        raise FhirError.of(400, "required", "$lookup needs the code system of the code "
                           "(system, or coding.system)", "system")
    return str(system), str(code), params.get("version") or version


def _properties(cs: CodeSystemIndex, code: str, wanted: set[str] | None) -> list[Params]:
    concept = cs.concepts[code]
    out: list[Params] = []

    def add(prop: str, value: tuple[str, Any]) -> None:
        if wanted is None or prop in wanted:
            out.append(Params().add("code", prop).add("value", value))

    if concept.get("definition"):
        add("definition", ("string", concept["definition"]))
    for parent in cs.parents.get(code, []):
        add("parent", ("code", parent))
    for child in cs.children.get(code, []):
        add("child", ("code", child))
    if cs.concept(code).inactive:
        add("inactive", ("boolean", True))
    for p in concept.get("property") or []:
        if p.get("code") in ("parent", "child"):
            continue  # already there, from the hierarchy
        for key, value in p.items():
            if key.startswith("value"):
                add(str(p.get("code")), (key[5].lower() + key[6:], value))
    return out


@operation("OperationDefinition-CodeSystem-lookup", needs=("CodeSystem.r",))
def lookup(call: OperationCall) -> Params:
    """Look one code up."""
    system, code, version = _coded(call)
    cs = terminology(call).code_system(system)
    if cs is None:
        raise FhirError.of(404, "not-found", f"The code system {system} is not known to this "
                           "server", "system")
    if version is not None and cs.version != version:
        raise FhirError.of(404, "not-found", f"Version {version} of the code system {system} is "
                           f"not known (this server has {cs.version or 'no version'})",
                           "version")
    if code not in cs.concepts:
        raise FhirError.of(404, "code-invalid", f"The code '{code}' is not in the code system "
                           f"{system}", "code")
    concept = cs.concept(code)
    res = cs.resource
    out = Params().add("name", str(res.get("title") or res.get("name") or cs.url))
    if cs.version:
        out.add("version", cs.version)
    out.add("display", concept.display or code)
    for d in concept.designation:
        part = Params()
        if d.get("language"):
            part.add("language", d["language"])
        if d.get("use"):
            part.add("use", d["use"])
        part.add("value", d.get("value", ""))
        out.add("designation", part)
    requested = call.params.all("property")
    for prop in _properties(cs, code, set(requested) if requested else None):
        out.add("property", prop)
    return out
