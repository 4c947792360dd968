"""Index rows of a resource for every search parameter of its type (written at write time,
https://hl7.org/fhir/R4/search.html; the storage shape is in fhir_server.search.schema).

Pure: resource dict in, rows out. Expressions are compiled once per resource type (lazily, under
a lock) and shared by all threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.search import values as V
from fhir_server.search.paths import (
    Extractor,
    RelativeExtractor,
    Unsupported,
    compile_branches,
    compile_expression,
    member_root,
    run_ops,
    split_union,
)
from fhir_server.search.paths import compile_relative as _compile_relative
from fhir_server.search.schema import INDEX_TABLES
from fhir_server.search.words import content_words, narrative_words
from resources.search_parameters import (
    SearchParameter,
    resource_types,
    search_param_by_url,
    search_params_for,
)

# Parameters answered from the resources table itself, not from index rows.
RESOURCE_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})

# Parameters without a FHIRPath expression indexed as words, one idx_string row per distinct
# word (value_norm; value_exact NULL): the narrative and every string of the resource
# (https://hl7.org/fhir/R4/search.html#text; fhir_server.search.words).
WORD_PARAMS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "_text": narrative_words,
    "_content": content_words,
}

TABLE_OF_TYPE = {
    "string": "idx_string",
    "token": "idx_token",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "reference": "idx_reference",
    "uri": "idx_uri",
    "composite": "idx_composite",
}

OF_TYPE_SUFFIX = ":of-type"
"""Token rows for ``identifier:of-type`` are stored under ``<param>:of-type`` with
system ``<type system>|<type code>`` and code ``<identifier value>``."""

Rows = dict[str, list[tuple[Any, ...]]]
Converter = Callable[[str | None, Any], list[Any]]

_CONVERTERS: dict[str, Converter] = {
    "string": V.string_values,
    "token": V.token_values,
    "date": V.date_values,
    "number": V.number_values,
    "quantity": V.quantity_values,
    "reference": V.reference_values,
    "uri": V.uri_values,
}


@dataclass(frozen=True)
class _Component:
    type: str
    extract: RelativeExtractor


@dataclass(frozen=True)
class _CompositeRoot:
    """Where a composite's components are read from, and the components."""

    ops: tuple[Any, ...]
    components: tuple[_Component, ...]


def _no_extract(resource: dict[str, Any]) -> list[Any]:
    return []


@dataclass(frozen=True)
class _Plan:
    """How to index one parameter on one resource type."""

    code: str
    type: str
    table: str
    extract: Extractor
    roots: tuple[_CompositeRoot, ...] = ()  # composites only
    words: Callable[[dict[str, Any]], list[str]] | None = None  # WORD_PARAMS only


class Indexer:
    """Computes index rows: `rows(resource) -> {table: [row, ...]}`, rows in INDEX_TABLES
    column order without the leading res_pk."""

    def __init__(self) -> None:
        self._plans: dict[str, tuple[_Plan, ...]] = {}
        self._lock = threading.Lock()

    def plans(self, resource_type: str) -> tuple[_Plan, ...]:
        """The compiled plans of a resource type (built on first use)."""
        plans = self._plans.get(resource_type)
        if plans is None:
            with self._lock:
                plans = self._plans.get(resource_type)
                if plans is None:
                    plans = self._compile(resource_type)
                    self._plans[resource_type] = plans
        return plans

    def warm(self, resource_types: list[str]) -> None:
        """Compile the plans of these types now (server start-up)."""
        for t in resource_types:
            self.plans(t)

    def _compile(self, resource_type: str) -> tuple[_Plan, ...]:
        out: list[_Plan] = []
        for code, sp in search_params_for(resource_type).items():
            if code in WORD_PARAMS:
                words = WORD_PARAMS[code]
                out.append(_Plan(code, "words", "idx_string", _no_extract, words=words))
                continue
            if code in RESOURCE_COLUMN_PARAMS or not sp.expression:
                continue
            table = TABLE_OF_TYPE.get(sp.type)
            if table is None:
                continue
            if sp.type == "composite":
                plan = self._compile_composite(resource_type, sp)
                if plan:
                    out.append(plan)
                continue
            # token: bound `code` elements are indexed with their implied system
            compiled = compile_expression(sp.expression, resource_type, sp.type == "token")
            if compiled is None:
                continue
            out.append(_Plan(code, sp.type, table, compiled.extract))
        return tuple(out)

    def _compile_composite(self, resource_type: str, sp: SearchParameter) -> _Plan | None:
        assert sp.expression
        if not sp.components or len(sp.components) > 3:
            return None
        comp_params = [search_param_by_url(url) for url, _ in sp.components]
        if any(c is None or c.type not in _CONVERTERS for c in comp_params):
            return None
        roots: list[_CompositeRoot] = []
        for member in split_union(sp.expression):
            if member_root(member) not in (resource_type, "Resource", "DomainResource"):
                continue
            try:
                for br in compile_branches(member, resource_type):
                    comps = tuple(
                        _Component(c.type, _compile_relative(expr, br.base, resource_type))
                        for c, (_url, expr) in zip(comp_params, sp.components, strict=True)
                        if c is not None
                    )
                    roots.append(_CompositeRoot(br.ops, comps))
            except Unsupported:
                return None  # outside the compiled subset: not indexed
        if not roots:
            return None
        return _Plan(sp.code, "composite", "idx_composite", _no_extract, tuple(roots))

    def rows(self, resource: dict[str, Any]) -> Rows:
        """Index rows of `resource` per table (tables without rows are omitted)."""
        rt = resource.get("resourceType")
        if not isinstance(rt, str):
            return {}
        out: Rows = {}
        memo: _Memo = {}
        for plan in self.plans(rt):
            if plan.words is not None:
                found_words = plan.words(resource)
                if found_words:
                    code = plan.code
                    bucket = out.setdefault("idx_string", [])
                    bucket.extend([(rt, code, w, None) for w in found_words])
                continue
            if plan.type == "composite":
                vals = _composite_rows(plan, resource, memo)
            else:
                found = plan.extract(resource)
                if not found:
                    continue
                conv = _CONVERTERS[plan.type]
                vals = []
                for typ, v in found:
                    vals.extend(conv(typ, v))
                    if typ == "Identifier" and plan.type == "token":
                        for sysc, value in V.identifier_type_values(v):
                            _add(
                                out,
                                "idx_token",
                                (rt, plan.code + OF_TYPE_SUFFIX, sysc, value, None),
                            )
            if not vals:
                continue
            bucket = out.setdefault(plan.table, [])
            seen: set[tuple[Any, ...]] = set()
            for val in vals:
                row = (rt, plan.code, *val) if isinstance(val, tuple) else (rt, plan.code, val)
                if row not in seen:
                    seen.add(row)
                    bucket.append(row)
        return out


def _add(out: Rows, table: str, row: tuple[Any, ...]) -> None:
    bucket = out.setdefault(table, [])
    if row not in bucket:
        bucket.append(row)


_Memo = dict[tuple[int, str, int], list[V.CompRow]]
"""Component values per (element, component type, extractor) within one resource: composites
share components (Observation has six with ``code``), computed once."""


def _composite_rows(plan: _Plan, resource: dict[str, Any], memo: _Memo) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for root in plan.roots:
        for element in run_ops(root.ops, [resource], resource):
            rows.extend(_combinations(root.components, element, resource, memo))
    return rows


def _combinations(
    components: tuple[_Component, ...], element: Any, resource: dict[str, Any], memo: _Memo
) -> list[tuple[Any, ...]]:
    """The cartesian product of the component values found in one element (a node of
    `resource`, alive while its rows are made, so its id() keys the memo)."""
    combos: list[tuple[Any, ...]] = [()]
    for comp in components:
        key = (id(element), comp.type, id(comp.extract))
        vals = memo.get(key)
        if vals is None:
            vals = []
            for ctyp, cv in comp.extract(element, resource):
                vals.extend(V.component_values(comp.type, ctyp, cv))
            memo[key] = vals
        if not vals:
            return []
        combos = [c + v for c in combos for v in vals]
    pad = (None,) * 4 * (3 - len(components))
    return [c + pad for c in combos]


_INDEXER: Indexer | None = None
_INDEXER_LOCK = threading.Lock()


def get_indexer() -> Indexer:
    """The process-wide Indexer, built on first use with every type compiled (~0.1 s)."""
    global _INDEXER
    if _INDEXER is None:
        with _INDEXER_LOCK:
            if _INDEXER is None:
                ix = Indexer()
                ix.warm(list(resource_types()))
                _INDEXER = ix
    return _INDEXER


assert set(TABLE_OF_TYPE.values()) == set(INDEX_TABLES)
