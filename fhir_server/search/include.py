"""_include and _revinclude (https://hl7.org/fhir/R4/search.html#include): a second query over
reference index rows of the page's resources, repeated for ``:iterate``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.search.model import Include
from fhir_server.store.base import Queryable

MAX_ROUNDS = 4
MAX_INCLUDED = 5000
_CHUNK = 500


def _chunks(pks: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(pks), _CHUNK):
        yield pks[i : i + _CHUNK]


def _forward(q: Queryable, inc: Include, pks: list[int]) -> list[int]:
    false = q.dialect.bool_false
    out: list[int] = []
    for chunk in _chunks(pks):
        args: list[Any] = list(chunk)
        conds = [f"ref.res_pk IN ({', '.join('?' * len(chunk))})"]
        if inc.source_type != "*":
            conds.append("ref.res_type = ?")
            args.append(inc.source_type)
        if inc.param != "*":
            conds.append("ref.param = ?")
            args.append(inc.param)
        if inc.target_type:
            conds.append("t.res_type = ?")
            args.append(inc.target_type)
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
        sql = (
            "SELECT DISTINCT ref.res_pk FROM resources p JOIN idx_reference ref "
            "ON ref.target_type = p.res_type AND ref.target_id = p.res_id "
            f"WHERE {' AND '.join(conds)}"
        )
        out.extend(row[0] for row in q.query(sql, args))
    return out


def resolve_includes(q: Queryable, includes: list[Include], pks: list[int]) -> list[int]:
    """pks of resources included by `includes` for the matches `pks`, in discovery order,
    without the matches themselves."""
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
        for inc in active:
            got = _reverse(q, inc, frontier) if inc.reverse else _forward(q, inc, frontier)
            for pk in got:
                if pk not in seen:
                    seen.add(pk)
                    new.append(pk)
        found.extend(new)
        if len(found) >= MAX_INCLUDED:
            return found[:MAX_INCLUDED]
        frontier = new
    return found
