"""_include and _revinclude (https://hl7.org/fhir/R4/search.html#include): a second query over
reference index rows of the page's resources, repeated for ``:iterate``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from functools import cache
from typing import Any

from fhir_server.search.model import Include
from fhir_server.store.base import Queryable
from resources.search_parameters import SearchParameter, resource_types, search_params_for

MAX_ROUNDS = 4
MAX_INCLUDED = 5000
_CHUNK = 500


def include_params(source_type: str) -> Mapping[str, SearchParameter]:
    """The reference parameters of `source_type` that ``_include=source_type:param`` and
    ``_revinclude`` may name (https://hl7.org/fhir/R4/search.html#include)."""
    return {
        code: sp
        for code, sp in search_params_for(source_type).items()
        if sp.type == "reference" and sp.expression
    }


@cache
def _revinclude_index() -> Mapping[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    every = tuple(resource_types())
    for source in sorted(every):
        for code, sp in include_params(source).items():
            for target in sp.target or every:
                out.setdefault(target, []).append(f"{source}:{code}")
    return {t: tuple(v) for t, v in out.items()}


def revinclude_params(target_type: str) -> tuple[str, ...]:
    """``Source:param`` pairs whose references can point at `target_type`: the
    ``_revinclude`` values that can find something on a search of it
    (https://hl7.org/fhir/R4/search.html#revinclude)."""
    return _revinclude_index().get(target_type, ())


def _chunks(pks: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(pks), _CHUNK):
        yield pks[i : i + _CHUNK]


def _forward(
    q: Queryable, source_type: str, param: str, targets: Collection[str] | None, pks: list[int]
) -> list[int]:
    """Targets (of `targets` types; None: any) of the `source_type:param` references of
    `pks`: the includes that differ only in their target type are one query."""
    false = q.dialect.bool_false
    out: list[int] = []
    for chunk in _chunks(pks):
        args: list[Any] = list(chunk)
        conds = [f"ref.res_pk IN ({', '.join('?' * len(chunk))})"]
        if source_type != "*":
            # the (res_pk, param) index, not (res_type, ...), on a planner without statistics
            conds.append(f"{q.dialect.unindexed('ref.res_type')} = ?")
            args.append(source_type)
        if param != "*":
            conds.append("ref.param = ?")
            args.append(param)
        if targets:
            conds.append(f"t.res_type IN ({', '.join('?' * len(targets))})")
            args.extend(sorted(targets))
        sql = (
            "SELECT DISTINCT t.pk FROM idx_reference ref JOIN resources t "
            "ON t.res_type = ref.target_type AND t.res_id = ref.target_id "
            f"WHERE {' AND '.join(conds)} AND t.deleted = {false}"
        )
        out.extend(row[0] for row in q.query(sql, args))
    return out


def _reverse(q: Queryable, inc: Include, pks: list[int]) -> list[int]:
    out: list[int] = []
    for chunk in _chunks(pks):
        args: list[Any] = list(chunk)
        conds = [f"p.pk IN ({', '.join('?' * len(chunk))})"]
        if inc.source_type != "*":
            conds.append("ref.res_type = ?")
            args.append(inc.source_type)
        if inc.param != "*":
            conds.append("ref.param = ?")
            args.append(inc.param)
        if inc.target_type:
            conds.append("p.res_type = ?")
            args.append(inc.target_type)
        # CROSS JOIN keeps SQLite's join order (the page's rows first, then one index probe
        # each; https://www.sqlite.org/optoverview.html#crossjoin); PostgreSQL reorders freely.
        sql = (
            "SELECT DISTINCT ref.res_pk FROM resources p CROSS JOIN idx_reference ref "
            f"WHERE ref.target_type = p.res_type AND ref.target_id = p.res_id "
            f"AND {' AND '.join(conds)}"
        )
        out.extend(row[0] for row in q.query(sql, args))
    return out


def resolve_includes(
    q: Queryable,
    includes: list[Include],
    pks: list[int],
    allowed: Callable[[list[int]], set[int]] | None = None,
) -> list[int]:
    """pks of resources included by `includes` for the matches `pks`, in discovery order,
    without the matches themselves. `allowed` keeps those the caller may see (each round, so
    `:iterate` never walks through a resource it may not see)."""
    if not includes or not pks:
        return []
    seen = set(pks)
    found: list[int] = []
    frontier = list(pks)
    for round_no in range(MAX_ROUNDS):
        active = [i for i in includes if round_no == 0 or i.iterate]
        if not active or not frontier:
            break
        new: list[int] = []
        forward: dict[tuple[str, str], set[str] | None] = {}  # (source, param): targets
        for inc in active:
            if inc.reverse:
                continue
            key = (inc.source_type, inc.param)
            if key in forward and forward[key] is None:
                continue  # already to every target type
            if inc.target_type is None:
                forward[key] = None
            else:
                targets = forward.setdefault(key, set())
                assert targets is not None
                targets.add(inc.target_type)
        found_now = [_reverse(q, inc, frontier) for inc in active if inc.reverse]
        found_now += [_forward(q, s, p, t, frontier) for (s, p), t in forward.items()]
        for got in found_now:
            for pk in got:
                if pk not in seen:
                    seen.add(pk)
                    new.append(pk)
        if allowed is not None and new:
            keep = allowed(new)
            new = [pk for pk in new if pk in keep]
        found.extend(new)
        if len(found) >= MAX_INCLUDED:
            return found[:MAX_INCLUDED]
        frontier = new
    return found
