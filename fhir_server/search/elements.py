"""_summary and _elements: returning part of each resource
(https://hl7.org/fhir/R4/search.html#summary, https://hl7.org/fhir/R4/search.html#elements).

Subsetted resources are marked with the SUBSETTED tag
(https://hl7.org/fhir/R4/resource.html#tag-and-security).
"""

from __future__ import annotations

from typing import Any

from resources.search_parameters import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def _element_name(key: str, allowed: frozenset[str]) -> str | None:
    """The element of a JSON key: `valueQuantity` -> `value[x]`, `_birthDate` -> `birthDate`."""
    name = key[1:] if key.startswith("_") else key
    if name in allowed:
        return name
    for i in range(len(name) - 1, 0, -1):
        if name[i].isupper() and name[:i] + "[x]" in allowed:
            return name[:i] + "[x]"
    return None


def _keep(resource: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if key in _ALWAYS or _element_name(key, allowed) is not None:
            out[key] = value
    return out


def _tag(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags if isinstance(t, dict)):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def subset(
    resource: dict[str, Any], summary: str | None, elements: tuple[str, ...]
) -> dict[str, Any]:
    """`resource` reduced per _summary (true|text|data|false) or _elements; unchanged otherwise."""
    rt = str(resource.get("resourceType", ""))
    if summary == "true":
        return _tag(_keep(resource, summary_elements(rt)))
    if summary == "text":
        return _tag(_keep(resource, mandatory_elements(rt) | {"text"}))
    if summary == "data":
        return _tag({k: v for k, v in resource.items() if k != "text"})
    if elements and summary in (None, "false"):
        allowed = frozenset(elements) | mandatory_elements(rt)
        allowed |= {e + "[x]" for e in elements}
        return _tag(_keep(resource, allowed))
    return resource
