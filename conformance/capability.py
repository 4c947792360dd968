"""The CapabilityStatement, generated from the registries the server itself runs on
(resource types, interactions, search parameters); never written by hand.
https://hl7.org/fhir/R4/capabilitystatement.html"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_server.interactions.registry import interactions
from resources.search_parameters import search_params_for
from resources.types import RESOURCE_TYPES

SOFTWARE_NAME = "telefhir"
SOFTWARE_VERSION = "0.1.0"
_COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")


def _codes(level: str) -> list[str]:
    out: list[str] = []
    for i in interactions().values():
        if i.level == level:
            out.extend(c for c in i.capability_codes if c not in out)
    return out


def _resource_entry(res_type: str, type_codes: list[str]) -> dict[str, Any]:
    params = search_params_for(res_type)
    search = []
    for code in sorted(params):
        p = params[code]
        item: dict[str, Any] = {"name": code, "type": p.type}
        if p.url:
            item["definition"] = p.url
        search.append(item)
    refs = sorted(c for c, p in params.items() if p.type == "reference" and c not in _COMMON)
    return {
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
        "searchInclude": [f"{res_type}:{c}" for c in refs] + ["*"],
        "searchRevInclude": _revincludes(res_type),
        "searchParam": search,
    }


@lru_cache(maxsize=1)
def _revinclude_index() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for source in sorted(RESOURCE_TYPES):
        for code, p in sorted(search_params_for(source).items()):
            if p.type != "reference" or code in _COMMON:
                continue
            targets = p.target or tuple(RESOURCE_TYPES)
            for t in targets:
                out.setdefault(t, []).append(f"{source}:{code}")
    return out


def _revincludes(res_type: str) -> list[str]:
    return _revinclude_index().get(res_type, [])


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
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource_entry(t, type_codes) for t in sorted(RESOURCE_TYPES)],
                "interaction": [{"code": c} for c in _codes("system")],
                "searchParam": [
                    {"name": "_type", "type": "token"},
                    {"name": "_id", "type": "token"},
                    {"name": "_lastUpdated", "type": "date"},
                ],
            }
        ],
    }
