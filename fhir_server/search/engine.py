"""Run searches: parse, build SQL, page with keysets, count, include
(https://hl7.org/fhir/R4/search.html, https://hl7.org/fhir/R4/http.html#paging)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError, Issue
from fhir_server.search.cursor import decode_cursor, encode_cursor
from fhir_server.search.include import resolve_includes
from fhir_server.search.lastn import last_n
from fhir_server.search.model import SearchRequest
from fhir_server.search.parse import parse_search
from fhir_server.search.query import QueryBuilder, Sql
from fhir_server.store.base import Queryable
from resources.compartments import compartment_resource_types, is_compartment_type

if TYPE_CHECKING:
    from fhir_server.access import Restriction


@dataclass
class SearchResult:
    """One page of a search: matches in order, included resources, total and cursors."""

    request: SearchRequest
    pks: list[int] = field(default_factory=list)
    include_pks: list[int] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None
    warnings: list[Issue] = field(default_factory=list)


class SearchEngine:
    """Searches over any Queryable (a store, or an open write transaction)."""

    def search(
        self,
        q: Queryable,
        res_type: str | None,
        params: list[tuple[str, str]],
        strict: bool = False,
        compartment: tuple[str, str] | None = None,
        base_url: str | None = None,
        restriction: Sequence[Restriction] = (),
    ) -> SearchResult:
        """Search `res_type` (None: all types or `_type`; with a compartment: every type in it).
        `restriction` (fhir_server.access.restrictions for "search" of the request being
        served) limits the matches, total, chains, _has and includes to what the caller may
        see: operations that search on behalf of a caller pass it."""
        if compartment is not None and not is_compartment_type(compartment[0]):
            raise FhirError.of(404, "not-found", f"{compartment[0]} is not a compartment type")
        req = parse_search(res_type, params, strict, compartment, base_url)
        if compartment is not None and not req.types:
            req.types = compartment_resource_types(compartment[0])
        req.restriction = req.include_restriction = tuple(restriction)
        return self.execute(q, req)

    def execute(self, q: Queryable, req: SearchRequest) -> SearchResult:
        """Run a parsed SearchRequest."""
        result = SearchResult(request=req, warnings=list(req.warnings))
        b = QueryBuilder(q.dialect)
        where = b.where(req)
        if req.count > 0:
            self._page(q, b, req, where, result)
        if req.total != "none" or req.summary == "count":
            if req.count > 0 and req.cursor is None and result.next_cursor is None:
                result.total = len(result.pks)  # the first page holds every match
            else:
                rows = q.query(f"SELECT COUNT(*) FROM resources r WHERE {where.text}",
                               where.args)
                result.total = int(rows[0][0])
        self._include(q, req, result)
        return result

    def last_n(self, q: Queryable, req: SearchRequest, max_per_code: int) -> SearchResult:
        """The newest `max_per_code` matches of an Observation search per code, grouped by
        code, and what they include; `total` is their number
        (https://hl7.org/fhir/R4/observation-operation-lastn.html; fhir_server.search.lastn)."""
        result = SearchResult(request=req, warnings=list(req.warnings))
        result.pks = last_n(q, req, max_per_code)
        result.total = len(result.pks)
        self._include(q, req, result)
        return result

    def _include(self, q: Queryable, req: SearchRequest, result: SearchResult) -> None:
        allowed = None
        if req.include_restriction:
            allowed = partial(self._allowed, q, restrictions=req.include_restriction)
        result.include_pks = resolve_includes(q, req.includes, result.pks, allowed)

    def _allowed(
        self, q: Queryable, pks: list[int], restrictions: Sequence[Restriction]
    ) -> set[int]:
        """Those of `pks` (current resources) every restriction allows."""
        out: set[int] = set()
        for i in range(0, len(pks), 500):
            chunk = pks[i : i + 500]
            b = QueryBuilder(q.dialect)
            args: list[Any] = list(chunk)
            cond = b.restricted("r", (), restrictions, args)
            sql = f"SELECT r.pk FROM resources r WHERE r.pk IN ({', '.join('?' * len(chunk))}) " \
                  f"AND {cond}"
            out.update(int(row[0]) for row in q.query(sql, args))
        return out

    def visible(
        self, q: Queryable, res_type: str, res_id: str, restrictions: Sequence[Restriction]
    ) -> bool:
        """Whether the current `res_type/res_id` is allowed by every restriction (as indexed
        in `q`: an open write transaction sees its own writes). A deleted resource has no index
        rows, so a compartment or criteria grant does not allow it."""
        if not restrictions:
            return True
        b = QueryBuilder(q.dialect)
        args: list[Any] = [res_type, res_id]
        cond = b.restricted("r", (res_type,), restrictions, args)
        if cond == "1 = 1":
            return True
        rows = q.query(f"SELECT 1 FROM resources r WHERE r.res_type = ? AND r.res_id = ? "
                       f"AND {cond}", args)
        return bool(rows)

    def _page(
        self, q: Queryable, b: QueryBuilder, req: SearchRequest, where: Sql, result: SearchResult
    ) -> None:
        direction, after = "n", None
        if req.cursor:
            direction, after = decode_cursor(req.cursor, len(req.sort) + 1)
        forward = direction == "n"
        args: list[Any] = []
        exprs = [b.sort_expr("r", k, args) for k in req.sort]
        if after is not None and any(
            is_text != isinstance(key, str)
            for (_e, is_text), key in zip(exprs, after, strict=False)
        ):
            raise FhirError.of(400, "invalid", "_cursor does not belong to this search")
        cols = [f"{e} AS k{n}" for n, (e, _) in enumerate(exprs)]
        inner = f"SELECT r.pk AS pk{''.join(', ' + c for c in cols)} FROM resources r"
        sql = f"SELECT * FROM ({inner} WHERE {where.text}) s"
        args.extend(where.args)
        descs = [k.desc for k in req.sort] + [False]
        names = [f"k{n}" for n in range(len(exprs))] + ["pk"]
        if after is not None:
            sql += " WHERE " + _keyset(names, descs, after, forward, args)
        order = [
            f"{n} {'DESC' if d == forward else 'ASC'}" for n, d in zip(names, descs, strict=True)
        ]
        sql += f" ORDER BY {', '.join(order)} LIMIT ?"
        args.append(req.count + 1)
        rows = q.query(sql, args)
        more = len(rows) > req.count
        rows = rows[: req.count]
        if not forward:
            rows.reverse()
        result.pks = [int(r[0]) for r in rows]
        if not rows:
            if not forward and after is not None:
                result.next_cursor = encode_cursor("p", after)  # back where we came from
            return
        first = [*rows[0][1:], int(rows[0][0])]
        last = [*rows[-1][1:], int(rows[-1][0])]
        if forward:
            result.next_cursor = encode_cursor("n", last) if more else None
            result.prev_cursor = encode_cursor("p", first) if after is not None else None
        else:
            result.prev_cursor = encode_cursor("p", first) if more else None
            result.next_cursor = encode_cursor("n", last)

    def find_ids(
        self,
        q: Queryable,
        res_type: str,
        query: str | list[tuple[str, str]],
        limit: int | None = None,
        restriction: Sequence[Restriction] = (),
    ) -> list[tuple[int, str]]:
        """(pk, id) of `res_type` resources matching a conditional-operation query such as
        ``identifier=http://x|1`` (a query string or decoded pairs;
        https://hl7.org/fhir/R4/http.html#ccreate). Unknown parameters are an error here
        (ignoring one could match everything), and so is a query without criteria."""
        if isinstance(query, str):
            params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        else:
            params = list(query)
        req = parse_search(res_type, params, strict=True)
        req.restriction = tuple(restriction)
        if not req.criteria:
            raise FhirError.of(
                400, "invalid", f"The conditional query on {res_type} has no search criteria"
            )
        b = QueryBuilder(q.dialect)
        where = b.where(req)
        sql = f"SELECT r.pk, r.res_id FROM resources r WHERE {where.text} ORDER BY r.pk"
        args = list(where.args)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [(int(pk), str(rid)) for pk, rid in q.query(sql, args)]

    def distinct_values(
        self, q: Queryable, res_type: str | None, param: str
    ) -> list[tuple[str, str]]:
        """The distinct (system, code) of a token parameter, or ("", uri) of a uri parameter,
        over the current resources of `res_type` (all types when None): what `$meta` reports
        in use for `_tag`, `_security` and `_profile` (https://hl7.org/fhir/R4/resource-operation-meta.html)."""
        kind = {"_tag": "token", "_security": "token", "_profile": "uri"}.get(param)
        if kind is None:
            raise ValueError(f"distinct_values covers _tag, _security and _profile, not {param}")
        cols = "system, code" if kind == "token" else "'', uri"
        sql = f"SELECT DISTINCT {cols} FROM idx_{kind} WHERE param = ?"
        args: list[Any] = [param]
        if res_type is not None:
            sql += " AND res_type = ?"
            args.append(res_type)
        return sorted((str(a or ""), str(b)) for a, b in q.query(sql, args))


def _keyset(
    names: list[str], descs: list[bool], after: list[Any], forward: bool, args: list[Any]
) -> str:
    """Rows strictly after (forward) or before the key tuple `after` in the sort order."""
    ors: list[str] = []
    for i, name in enumerate(names):
        terms = []
        for j in range(i):
            terms.append(f"{names[j]} = ?")
            args.append(after[j])
        greater = descs[i] != forward  # ascending & forward, or descending & backward
        terms.append(f"{name} {'>' if greater else '<'} ?")
        args.append(after[i])
        ors.append("(" + " AND ".join(terms) + ")")
    return "(" + " OR ".join(ors) + ")"


_ENGINE = SearchEngine()


def get_engine() -> SearchEngine:
    """The process-wide SearchEngine (stateless)."""
    return _ENGINE
