"""The R4 search parameter registry (https://hl7.org/fhir/R4/searchparameter-registry.html).

Loaded from ``data/search-parameters.json``, generated from the official R4 definitions by
``python -m resources.build_search_data``. Lookups are cached; everything here is immutable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

_DATA = Path(__file__).resolve().parent / "data" / "search-parameters.json"

# Modifiers each parameter type allows (https://hl7.org/fhir/R4/search.html#modifiers);
# the R4 definitions do not list them per parameter. `[type]` (reference :Type) is implied.
MODIFIERS_BY_TYPE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "string": ("missing", "exact", "contains"),
        "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
        "reference": ("missing", "identifier", "above", "below"),
        "date": ("missing",),
        "number": ("missing",),
        "quantity": ("missing",),
        "uri": ("missing", "below", "above"),
        "composite": ("missing",),
        "special": (),
    }
)

PARAM_TYPES = frozenset(MODIFIERS_BY_TYPE)


@dataclass(frozen=True)
class SearchParameter:
    """One SearchParameter (https://hl7.org/fhir/R4/searchparameter.html)."""

    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    expression: str | None
    base: tuple[str, ...]
    target: tuple[str, ...]
    url: str
    modifiers: tuple[str, ...]
    comparators: tuple[str, ...]
    components: tuple[tuple[str, str], ...]  # (definition url, FHIRPath relative to the base)
    description: str = ""


def _from_json(d: Mapping[str, Any]) -> SearchParameter:
    return SearchParameter(
        code=d["code"],
        type=d["type"],
        expression=d.get("expression"),
        base=tuple(d["base"]),
        target=tuple(d.get("target", ())),
        url=d["url"],
        modifiers=tuple(d.get("modifiers") or MODIFIERS_BY_TYPE.get(d["type"], ())),
        comparators=tuple(d.get("comparators", ())),
        components=tuple((c[0], c[1]) for c in d.get("components", ())),
        description=d.get("description", ""),
    )


@cache
def _load() -> tuple[Mapping[str, str], tuple[SearchParameter, ...]]:
    with _DATA.open(encoding="utf-8") as f:
        raw = json.load(f)
    types = MappingProxyType(dict(raw["resourceTypes"]))
    return types, tuple(_from_json(p) for p in raw["searchParameters"])


def resource_types() -> Mapping[str, str]:
    """Concrete R4 resource types -> the abstract type they specialise (Resource/DomainResource)."""
    return _load()[0]


def all_search_params() -> tuple[SearchParameter, ...]:
    """Every R4 SearchParameter, ordered by url."""
    return _load()[1]


@cache
def _by_url() -> Mapping[str, SearchParameter]:
    return MappingProxyType({p.url: p for p in all_search_params()})


def search_param_by_url(url: str) -> SearchParameter | None:
    """A SearchParameter by canonical url (composite components point at others by url)."""
    return _by_url().get(url)


@cache
def _by_type() -> Mapping[str, Mapping[str, SearchParameter]]:
    types = resource_types()
    out: dict[str, dict[str, SearchParameter]] = {t: {} for t in types}
    common: list[SearchParameter] = []
    domain: list[SearchParameter] = []
    for p in all_search_params():
        if "Resource" in p.base:
            common.append(p)
        if "DomainResource" in p.base:
            domain.append(p)
        for b in p.base:
            if b in out:
                out[b][p.code] = p
    for t, params in out.items():
        inherited = common + (domain if types[t] == "DomainResource" else [])
        for p in inherited:
            params.setdefault(p.code, p)
    return MappingProxyType(
        {t: MappingProxyType(dict(sorted(ps.items()))) for t, ps in out.items()}
    )


def search_params_for(resource_type: str) -> Mapping[str, SearchParameter]:
    """Search parameters of a resource type by code, including the Resource/DomainResource
    ones (`_id`, `_lastUpdated`, `_tag`, ...); empty for an unknown type."""
    return _by_type().get(resource_type, MappingProxyType({}))


@cache
def common_search_params() -> Mapping[str, SearchParameter]:
    """The parameters every resource type has (base Resource), for system-level search."""
    return MappingProxyType({p.code: p for p in all_search_params() if "Resource" in p.base})


_SUMMARY = Path(__file__).resolve().parent / "data" / "summary-elements.json"


@cache
def _summary() -> Mapping[str, tuple[frozenset[str], frozenset[str]]]:
    with _SUMMARY.open(encoding="utf-8") as f:
        raw = json.load(f)
    return MappingProxyType(
        {e["type"]: (frozenset(e["summary"]), frozenset(e["mandatory"])) for e in raw["elements"]}
    )


def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements marked isSummary (choice elements as ``value[x]``), for _summary=true
    (https://hl7.org/fhir/R4/search.html#summary)."""
    return _summary().get(resource_type, (frozenset(), frozenset()))[0]


def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements with min >= 1, kept by _summary=text and _elements."""
    return _summary().get(resource_type, (frozenset(), frozenset()))[1]
