"""The CapabilityStatement, generated from the registries the server itself runs on
(resource types, interactions, and the search engine's own parameter, modifier and include
tables); never written by hand. https://hl7.org/fhir/R4/capabilitystatement.html"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_server.interactions.registry import interactions
from fhir_server.negotiation import FORMATS
from fhir_server.patching.formats import PATCH_FORMATS
from fhir_server.search.include import include_params, revinclude_params
from fhir_server.search.model import PREFIXED_TYPES, PREFIXES
from fhir_server.search.parse import (
    ENGINE_PARAMS,
    IGNORED,
    MAX_CHAIN_DEPTH,
    MAX_COUNT,
    SUMMARY_VALUES,
    TOTAL_VALUES,
    modifiers_for,
    supported_params,
)
from operations.registry import capability_operations
from resources.search_parameters import SearchParameter
from resources.types import RESOURCE_TYPES

SOFTWARE_NAME = "telefhir"
SOFTWARE_VERSION = "0.1.0"


def _codes(level: str) -> list[str]:
    out: list[str] = []
    for i in interactions().values():
        if i.level == level:
            out.extend(c for c in i.capability_codes if c not in out)
    return out


def param_documentation(sp: SearchParameter) -> str:
    """What the engine supports on one parameter: modifiers, prefixes, chaining
    (https://hl7.org/fhir/R4/search.html#modifiers)."""
    mods = [f":{m}" for m in sorted(modifiers_for(sp))]
    if sp.type == "reference":
        mods.append(":[type]")
    parts = [f"Modifiers: {', '.join(mods)}." if mods else "No modifiers."]
    if sp.type in PREFIXED_TYPES:
        parts.append(f"Prefixes: {', '.join(PREFIXES)}.")
    if sp.type == "reference":
        parts.append(f"Chaining ({sp.code}.[parameter], up to {MAX_CHAIN_DEPTH} levels) "
                     "and reverse chaining (_has).")
    if sp.type == "composite":
        parts.append("Values are component values joined by '$'.")
    parts.append("Several values separated by ',' match any of them.")
    return " ".join(parts)


def search_params(types: tuple[str, ...]) -> list[dict[str, Any]]:
    """`searchParam` entries: exactly the parameters the search engine answers on `types`
    (every type when empty), each with its definition, type and supported modifiers."""
    out = []
    for code, sp in sorted(supported_params(types).items()):
        item: dict[str, Any] = {"name": code}
        if sp.url:
            item["definition"] = sp.url
        item["type"] = sp.type
        item["documentation"] = param_documentation(sp)
        out.append(item)
    out.extend({"name": code, "type": "special", "documentation": doc}
               for code, doc in ENGINE_PARAMS.items())
    return out


def _resource_entry(res_type: str, type_codes: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": res_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
        "interaction": [{"code": c} for c in type_codes],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchInclude": ["*", f"{res_type}:*", *(f"{res_type}:{c}"
                                                  for c in sorted(include_params(res_type)))],
        "searchRevInclude": list(revinclude_params(res_type)),
        "searchParam": search_params((res_type,)),
    }
    ops = capability_operations(res_type)
    if ops:
        entry["operation"] = ops
    return entry


def search_documentation() -> str:
    """The search result parameters and behaviours the parser implements, as markdown
    (https://hl7.org/fhir/R4/search.html#return)."""
    return (
        "Search result parameters: `_count` (at most "
        f"{MAX_COUNT}), `_sort` (any listed parameter except composites, `-` for descending), "
        f"`_total` ({' | '.join(TOTAL_VALUES)}), `_summary` ({' | '.join(SUMMARY_VALUES)}), "
        "`_elements`, `_include` and `_revinclude` (with `:iterate`), `_contained=false`. "
        f"Ignored: {', '.join(f'`{p}`' for p in sorted(IGNORED - {'_cursor'}))}. "
        "Paging follows the `next`/`previous` links. Unknown or unsupported parameters are "
        "ignored with a warning in the Bundle, or answered with 400 under "
        "`Prefer: handling=strict`."
    )


@lru_cache(maxsize=8)
def capability_statement(base_url: str) -> dict[str, Any]:
    """The server's CapabilityStatement (kind instance) for clients at `base_url`."""
    type_codes = _codes("type")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "telefhir",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {"description": "telefhir FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                "mode": "server",
                "documentation": search_documentation(),
                "resource": [_resource_entry(t, type_codes) for t in sorted(RESOURCE_TYPES)],
                "interaction": [{"code": c} for c in _codes("system")],
                "searchParam": [
                    {"name": "_type", "type": "token",
                     "documentation": "Resource types to search, separated by ','."},
                    *search_params(()),
                ],
                "operation": capability_operations(None),
            }
        ],
    }
