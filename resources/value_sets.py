"""Expanding ValueSets and looking codes up in CodeSystems, over the R4 terminology the server
ships (``data/terminology.json.gz``, made by ``python -m resources.build_profiles``) and any
CodeSystem or ValueSet resources the caller resolves (those stored on the server).

Implements the expansion rules of https://hl7.org/fhir/R4/valueset.html#compositions
(include/exclude by concept list, by filter on a known code system, by whole code system and by
imported value sets) for ``$expand``, ``$validate-code`` and ``$lookup``
(https://hl7.org/fhir/R4/terminology-service.html). A code system we do not hold (SNOMED CT,
LOINC) can only be used by explicit concept lists; anything else cannot be expanded and says so.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

DATA_FILE = Path(__file__).resolve().parent / "data" / "terminology.json.gz"

JsonObj = dict[str, Any]
Resolver = Callable[[str, str], JsonObj | None]
"""(resource type, canonical url) -> a stored CodeSystem/ValueSet, or None."""


class CannotExpand(Exception):
    """The value set cannot be expanded here; the message says why."""


@dataclass(frozen=True)
class Concept:
    """One code of an expansion (ValueSet.expansion.contains)."""

    system: str
    code: str
    display: str | None = None
    version: str | None = None
    abstract: bool = False
    inactive: bool = False
    definition: str | None = None
    designation: tuple[JsonObj, ...] = ()


@dataclass
class CodeSystemIndex:
    """A CodeSystem's concepts flattened, with their hierarchy (CodeSystem.concept.concept)."""

    resource: JsonObj
    concepts: dict[str, JsonObj] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, cs: JsonObj) -> CodeSystemIndex:
        idx = cls(cs)

        def walk(items: list[JsonObj], parent: str | None) -> None:
            for c in items:
                code = c.get("code")
                if not isinstance(code, str):
                    continue
                idx.concepts.setdefault(code, c)
                if parent is not None:
                    idx.parents.setdefault(code, []).append(parent)
                    idx.children.setdefault(parent, []).append(code)
                walk(c.get("concept") or [], code)

        walk(cs.get("concept") or [], None)
        # hierarchy expressed as "parent" properties (e.g. v3 code systems)
        for code, c in idx.concepts.items():
            for p in c.get("property") or []:
                if p.get("code") in ("parent", "subsumedBy") and isinstance(p.get("valueCode"),
                                                                           str):
                    par = p["valueCode"]
                    if par not in idx.parents.get(code, []):
                        idx.parents.setdefault(code, []).append(par)
                        idx.children.setdefault(par, []).append(code)
        return idx

    @property
    def url(self) -> str:
        return str(self.resource.get("url", ""))

    @property
    def version(self) -> str | None:
        v = self.resource.get("version")
        return str(v) if v is not None else None

    def descendants(self, code: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.children.get(code, []))
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.children.get(c, []))
        return out

    def property_value(self, code: str, prop: str) -> list[str]:
        c = self.concepts.get(code) or {}
        out: list[str] = []
        for p in c.get("property") or []:
            if p.get("code") == prop:
                out.extend(str(v) for k, v in p.items() if k.startswith("value"))
        return out

    def concept(self, code: str) -> Concept:
        c = self.concepts[code]
        abstract = any(p.get("code") in ("notSelectable", "abstract") and p.get("valueBoolean")
                       for p in c.get("property") or [])
        inactive = any(
            (p.get("code") == "status" and p.get("valueCode") in ("retired", "deprecated"))
            or (p.get("code") == "inactive" and p.get("valueBoolean"))
            for p in c.get("property") or [])
        return Concept(self.url, code, c.get("display"), self.version, abstract, inactive,
                       c.get("definition"), tuple(c.get("designation") or ()))


@cache
def _shipped() -> tuple[dict[str, JsonObj], dict[str, JsonObj]]:
    raw = orjson.loads(gzip.decompress(DATA_FILE.read_bytes()))
    return ({cs["url"]: cs for cs in raw["codeSystems"]},
            {vs["url"]: vs for vs in raw["valueSets"]})


@cache
def _shipped_index(url: str) -> CodeSystemIndex | None:
    cs = _shipped()[0].get(url)
    return CodeSystemIndex.of(cs) if cs is not None else None


def _no_stored(_rtype: str, _url: str) -> JsonObj | None:
    return None


class Terminology:
    """Code systems and value sets by canonical URL: those `resolve` finds (the server's
    stored resources) first, then the R4 ones shipped with the server."""

    def __init__(self, resolve: Resolver = _no_stored) -> None:
        self._resolve = resolve
        self._stored_cs: dict[str, CodeSystemIndex | None] = {}

    def code_system(self, url: str) -> CodeSystemIndex | None:
        url = url.split("|", 1)[0]
        if url not in self._stored_cs:
            found = self._resolve("CodeSystem", url)
            self._stored_cs[url] = CodeSystemIndex.of(found) if found is not None else None
        return self._stored_cs[url] or _shipped_index(url)

    def value_set(self, url: str) -> JsonObj | None:
        url = url.split("|", 1)[0]
        return self._resolve("ValueSet", url) or _shipped()[1].get(url)

    # --- expansion ---------------------------------------------------------------------

    def expand(self, vs: JsonObj, stack: tuple[str, ...] = ()) -> list[Concept]:
        """Every code of `vs`, in definition order, without duplicates."""
        url = str(vs.get("url") or "")
        if url and url in stack:
            raise CannotExpand(f"ValueSet {url} includes itself (via {' > '.join(stack)})")
        stack = (*stack, url) if url else stack
        compose = vs.get("compose")
        if not compose:
            contains = (vs.get("expansion") or {}).get("contains")
            if contains is not None:
                return list(_flatten_contains(contains))
            raise CannotExpand(f"ValueSet {url or '(given)'} has neither compose nor expansion")
        try:
            return self._compose(compose, stack)
        except CannotExpand:
            contains = (vs.get("expansion") or {}).get("contains")
            if contains is None:
                raise
            return list(_flatten_contains(contains))  # the expansion published with it

    def _compose(self, compose: JsonObj, stack: tuple[str, ...]) -> list[Concept]:
        out: dict[tuple[str, str], Concept] = {}
        for inc in compose.get("include") or []:
            for c in self._include(inc, stack):
                out.setdefault((c.system, c.code), c)
        for exc in compose.get("exclude") or []:
            for c in self._include(exc, stack):
                out.pop((c.system, c.code), None)
        return list(out.values())

    def _include(self, inc: JsonObj, stack: tuple[str, ...]) -> list[Concept]:
        system = inc.get("system")
        imported: list[list[Concept]] = []
        for ref in inc.get("valueSet") or []:
            other = self.value_set(ref)
            if other is None:
                raise CannotExpand(f"The imported ValueSet {ref} is not known to this server")
            imported.append(self.expand(other, stack))
        part: list[Concept] | None = None
        if system:
            part = self._from_system(str(system), inc)
        elif inc.get("concept") or inc.get("filter"):
            raise CannotExpand("A compose.include with concepts or filters needs a system")
        for group in imported:
            keys = {(c.system, c.code) for c in group}
            part = group if part is None else [c for c in part if (c.system, c.code) in keys]
        return part or []

    def _from_system(self, system: str, inc: JsonObj) -> list[Concept]:
        cs = self.code_system(system)
        version = inc.get("version") or (cs.version if cs else None)
        listed = inc.get("concept")
        if listed:
            out = []
            for item in listed:
                code = str(item.get("code"))
                known = cs.concept(code) if cs and code in cs.concepts else None
                display = item.get("display") or (known.display if known else None)
                out.append(Concept(system, code, display, version,
                                   known.abstract if known else False,
                                   known.inactive if known else False,
                                   known.definition if known else None,
                                   tuple(item.get("designation") or ())
                                   or (known.designation if known else ())))
            if inc.get("filter"):
                allowed = {c.code for c in self._filtered(system, cs, inc["filter"])}
                out = [c for c in out if c.code in allowed]
            return out
        if cs is None:
            raise CannotExpand(f"The code system {system} is not known to this server, so a "
                               "value set drawing on all or part of it cannot be expanded")
        content = cs.resource.get("content")
        if content not in ("complete", "fragment", None):
            raise CannotExpand(f"The code system {system} has content '{content}': its codes "
                               "are not held here")
        if inc.get("filter"):
            return self._filtered(system, cs, inc["filter"])
        return [cs.concept(code) for code in cs.concepts]

    def _filtered(
        self, system: str, cs: CodeSystemIndex | None, filters: list[JsonObj]
    ) -> list[Concept]:
        if cs is None:
            raise CannotExpand(f"The code system {system} is not known to this server, so its "
                               "filters cannot be evaluated")
        codes = list(cs.concepts)
        for f in filters:
            codes = [c for c in codes if _filter_ok(cs, f, c)]
        return [cs.concept(c) for c in codes]

    # --- look-ups ------------------------------------------------------------------------

    def contains(self, vs: JsonObj, system: str | None, code: str) -> Concept | None:
        """The expansion entry for `system|code` (any system when None), or None."""
        for c in self.expand(vs):
            if c.code == code and (system is None or c.system == system):
                return c
        return None


def _filter_ok(cs: CodeSystemIndex, f: JsonObj, code: str) -> bool:
    prop, op, value = f.get("property"), f.get("op"), str(f.get("value", ""))
    if prop == "concept" or prop == "code":
        if op == "is-a":
            return code == value or code in cs.descendants(value)
        if op == "descendent-of":
            return code in cs.descendants(value)
        if op == "is-not-a":
            return not (code == value or code in cs.descendants(value))
        if op == "=":
            return code == value
        if op == "in":
            return code in value.split(",")
        if op == "not-in":
            return code not in value.split(",")
        if op == "regex":
            return re.fullmatch(value, code) is not None
        if op == "generalizes":
            return code == value or value in cs.descendants(code)
    elif isinstance(prop, str):
        values = cs.property_value(code, prop)
        if op == "=":
            return value in values
        if op == "in":
            return bool(set(values) & set(value.split(",")))
        if op == "not-in":
            return not set(values) & set(value.split(","))
        if op == "exists":
            return bool(values) == (value == "true")
        if op == "regex":
            return any(re.fullmatch(value, v) for v in values)
    raise CannotExpand(f"The filter {prop} {op} {value} on {cs.url} is not supported")


def _flatten_contains(items: list[JsonObj]) -> Iterator[Concept]:
    for c in items:
        if c.get("code") is not None:
            yield Concept(str(c.get("system", "")), str(c["code"]), c.get("display"),
                          c.get("version"), bool(c.get("abstract")), bool(c.get("inactive")),
                          None, tuple(c.get("designation") or ()))
        yield from _flatten_contains(c.get("contains") or [])
