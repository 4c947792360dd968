"""SearchRequest -> SQL over the index tables (https://hl7.org/fhir/R4/search.html).

One ``pk IN (SELECT res_pk FROM idx_x ...)`` per parameter (each an index probe on
(res_type, param, value...)), OR inside a parameter, AND across parameters; chains and _has are
sub-selects over idx_reference joined to resources. Text uses ``?`` placeholders throughout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server.search.indexer import OF_TYPE_SUFFIX, TABLE_OF_TYPE, WORD_PARAMS
from fhir_server.search.model import (
    ANY_COMPARTMENT_ID,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    IdentifierValue,
    InList,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchRequest,
    SortKey,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
    ValueSetValue,
    WordsValue,
)
from fhir_server.search.schema import DATE_MAX, DATE_MIN
from fhir_server.search.values import CANONICAL_MARK
from fhir_server.store.dialect import Dialect
from resources.compartments import SELF, compartment_params
from resources.search_parameters import SearchParameter, resource_types

if TYPE_CHECKING:
    from fhir_server.access import Grant, Restriction

TEXT_LAST = "\U0010ffff"  # sorts after any text: nulls last in ascending text sorts
INT_LAST = DATE_MAX + 1
REAL_LAST = 9e307
_US_PER_DAY = 86_400_000_000


@dataclass
class Sql:
    """SQL text with `?` placeholders and its arguments, in order."""

    text: str
    args: list[Any] = field(default_factory=list)


def prefix_upper(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF and not 0xD7FF <= last < 0xE000:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def like_escape(text: str) -> str:
    """Escape LIKE wildcards (the queries say ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def uri_ancestors(uri: str) -> list[str]:
    """`uri` and its prefixes at '/' boundaries, for :above."""
    out = [uri]
    cut = uri.rstrip("/")
    while "/" in cut:
        cut = cut.rsplit("/", 1)[0]
        if cut.endswith(":/") or cut.endswith(":"):
            break
        out.append(cut)
    return out


def _selectivity_rank(crit: Criterion) -> int | None:
    """How few resources a criterion is likely to match, 0 (fewest) to 4; None when it cannot
    start a search (it excludes rather than finds: :missing=true, :not)."""
    if isinstance(crit, InList):
        return 1
    if isinstance(crit, Chain):  # its targets' matches, then the references to them
        inner = [_selectivity_rank(c) for _, c in crit.targets]
        return 2 if all(r is not None for r in inner) else None
    if isinstance(crit, Has):  # as many as the inner criterion's matches refer to
        return 3 if _selectivity_rank(crit.inner) is not None else None
    if crit.code == "_id":
        return 0 if crit.missing is None and crit.modifier != "not" else None
    if crit.code == "_lastUpdated" or crit.missing is True or crit.modifier in ("not", "not-in"):
        return None
    if crit.missing is False:
        return 4
    kind = crit.param.type
    if kind in ("reference", "uri") or (kind == "token" and crit.modifier != "text"):
        return 1
    if kind == "string" and crit.modifier == "exact":
        return 1
    return 3


class QueryBuilder:
    """Builds SQL for one SearchRequest; aliases are numbered so sub-selects can nest."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        self.n = 0
        self.restriction: tuple[Restriction, ...] = ()  # applied to chain targets, _has sources

    def _alias(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    @property
    def false(self) -> str:
        return self.d.bool_false

    # --- type filters ----------------------------------------------------------------------

    def _type_filter(self, column: str, types: tuple[str, ...], args: list[Any]) -> str:
        if not types:
            types = tuple(resource_types())
        if len(types) == 1:
            args.append(types[0])
            return f"{column} = ?"
        args.extend(types)
        return f"{column} IN ({', '.join('?' * len(types))})"

    # --- WHERE of the main query ----------------------------------------------------------

    def where(self, req: SearchRequest, alias: str = "r") -> Sql:
        """Conditions on `alias` (a resources row) for every criterion of `req`.

        The most selective criterion (see `driver`) is a ``pk IN (index probe)`` that the
        database starts from; the others are correlated EXISTS probes of the (res_pk, param)
        index for each candidate, so no other criterion's full match list is built. SQLite
        has no statistics to choose by, so the type filter is kept out of its index choice
        when a driver exists."""
        args: list[Any] = []
        conds = [f"{alias}.deleted = {self.false}"]
        driver = self.driver(req.criteria)
        if req.compartment is not None and req.compartment[1] != ANY_COMPARTMENT_ID:
            # one compartment's members are few: its index probe starts the search, and the
            # criteria are per-row probes (else `Patient/X/Observation?category=laboratory`
            # starts from every laboratory result: 0.6 s at 280,000 resources)
            driver = None
        self.restriction = req.restriction
        if req.types:
            column = f"{alias}.res_type"
            if driver is not None or req.compartment is not None:
                column = self.d.unindexed(column)
            conds.append(self._type_filter(column, req.types, args))
        for crit in req.criteria:
            conds.append(self.criterion(alias, req.types, crit, args, drive=crit is driver))
        if req.compartment is not None:
            conds.append(self.compartment(alias, req.types, req.compartment, args,
                                          req.compartment_self))
        if req.restriction:
            drive = driver is None and req.compartment is None
            conds.append(self.restricted(alias, req.types, req.restriction, args, drive))
        return Sql(" AND ".join(conds), args)

    # --- access restrictions (fhir_server.access) ------------------------------------------

    def restricted(
        self,
        alias: str,
        types: Sequence[str],
        restrictions: Sequence[Restriction],
        args: list[Any],
        drive: bool = False,
    ) -> str:
        """`alias` (a resources row of one of `types`; every type when empty) is allowed by
        every restriction. `drive`: the restriction may start the search (no other criterion
        does), so compartment membership is an index probe by target; otherwise a probe of
        the row's own reference rows."""
        saved, self.restriction = self.restriction, ()  # a grant's criteria are not restricted
        try:
            conds = [self._restriction(alias, tuple(types) or tuple(resource_types()), r, args,
                                       drive) for r in restrictions]
        finally:
            self.restriction = saved
        return conds[0] if len(conds) == 1 else "(" + " AND ".join(conds) + ")"

    def _restriction(
        self, alias: str, types: tuple[str, ...], r: Restriction, args: list[Any], drive: bool
    ) -> str:
        whole = [t for t in types if r.whole_type(t)]
        if len(whole) == len(types):
            return "1 = 1"
        parts: list[str] = []
        if whole:
            parts.append(self._type_filter(f"{alias}.res_type", tuple(whole), args))
        for g in r.grants:
            if g.whole:
                continue
            covered = [t for t in types if g.covers(t) and t not in whole]
            if g.compartment is not None:
                ctype = g.compartment[0]
                covered = [t for t in covered if t == ctype or compartment_params(ctype, t)]
            if covered:
                parts.append(self._grant(alias, tuple(covered), g, args, drive))
        return "(" + " OR ".join(parts) + ")" if parts else "1 = 0"

    def _grant(
        self, alias: str, types: tuple[str, ...], g: Grant, args: list[Any], drive: bool
    ) -> str:
        """Rows of `types` inside grant `g`: members of its compartment, matching its criteria."""
        from fhir_server.search.parse import parse_search

        per_type: list[str] = []
        for t in types:
            conds = [f"{alias}.res_type = ?"]
            args.append(t)
            if g.compartment is not None:
                conds.append(self._member(alias, t, g.compartment, args, drive))
            if g.criteria:
                parsed = parse_search(t, list(g.criteria), strict=True)
                conds.extend(self.criterion(alias, (t,), c, args, drive=False)
                             for c in parsed.criteria)
            per_type.append("(" + " AND ".join(conds) + ")")
        return "(" + " OR ".join(per_type) + ")"

    def _member(
        self, alias: str, res_type: str, comp: tuple[str, str], args: list[Any], drive: bool
    ) -> str:
        """`alias` (of `res_type`) is in compartment `comp`
        (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        ctype, cid = comp
        all_params = compartment_params(ctype, res_type)
        params = [p for p in all_params if p != SELF]
        alts: list[str] = []
        if params:
            i = self._alias("m")
            marks = ", ".join("?" * len(params))
            if drive:
                args.extend([res_type, *params, cid, ctype])
                alts.append(
                    f"{alias}.pk IN (SELECT {i}.res_pk FROM idx_reference {i} "
                    f"WHERE {i}.res_type = ? AND {i}.param IN ({marks}) "
                    f"AND {i}.target_id = ? AND {i}.target_type = ?)"
                )
            else:
                args.extend([*params, ctype, cid])
                alts.append(
                    f"EXISTS (SELECT 1 FROM idx_reference {i} WHERE {i}.res_pk = {alias}.pk "
                    f"AND {i}.param IN ({marks}) AND {i}.target_type = ? AND {i}.target_id = ?)"
                )
        if SELF in all_params or res_type == ctype:  # the compartment's own resource
            args.append(cid)
            alts.append(f"{alias}.res_id = ?")
        if not alts:
            return "1 = 0"
        return alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")"

    @staticmethod
    def driver(criteria: list[Criterion]) -> Criterion | None:
        """The criterion likely to match fewest resources, to start the search from; None
        when an `_id` (a unique-key lookup) or no positive index criterion is there."""
        best: tuple[int, int] | None = None
        found: Criterion | None = None
        for n, crit in enumerate(criteria):
            rank = _selectivity_rank(crit)
            if rank is None:
                continue
            if rank == 0:
                return None  # _id: the resources table's own unique index drives
            if best is None or (rank, n) < best:
                best, found = (rank, n), crit
        return found

    def criterion(
        self,
        alias: str,
        types: tuple[str, ...],
        crit: Criterion,
        args: list[Any],
        drive: bool = True,
    ) -> str:
        """SQL for one criterion on `alias`; `drive=False` asks for a per-row probe."""
        if isinstance(crit, Clause):
            return self.clause(alias, types, crit, args, drive)
        # A planner with statistics picks the join order of a chain or _has itself (measured
        # at a million resources: the per-row form misled PostgreSQL's, 0.5 s -> 1.7 s)
        drive_joins = drive or self.d.plans_from_statistics
        if isinstance(crit, Chain):
            return self.chain(alias, types, crit, args, drive_joins)
        if isinstance(crit, InList):
            return self.in_list(alias, types, crit, args)
        return self.has(alias, types, crit, args, drive_joins)

    def chain(
        self, alias: str, types: tuple[str, ...], c: Chain, args: list[Any], drive: bool = True
    ) -> str:
        """``ref.param=value`` (https://hl7.org/fhir/R4/search.html#chaining). Driving: the
        targets the inner criterion finds (by their own index), then the reference rows that
        point at each by (type, param, target); CROSS JOIN keeps that order on SQLite.
        Otherwise a probe of the candidate's own reference rows, then each target."""
        ref, tgt = self._alias("ref"), self._alias("t")
        sub_args: list[Any] = []
        if drive:
            first, rows = self._type_filter(f"{ref}.res_type", types, sub_args), (tgt, ref)
        else:
            first, rows = f"{ref}.res_pk = {alias}.pk", (ref, tgt)
        sub_args.append(c.code)
        per_target: list[str] = []
        for t, inner in c.targets:
            sub_args.append(t)
            cond = self.criterion(tgt, (t,), inner, sub_args, drive)
            if self.restriction:  # a chain may only look at targets the caller may see
                cond += " AND " + self.restricted(tgt, (t,), self.restriction, sub_args)
            per_target.append(f"({tgt}.res_type = ? AND {cond})")
        args.extend(sub_args)
        tables = {tgt: f"resources {tgt}", ref: f"idx_reference {ref}"}
        body = (
            f"FROM {tables[rows[0]]} CROSS JOIN {tables[rows[1]]} "
            f"WHERE {tgt}.res_type = {ref}.target_type AND {tgt}.res_id = {ref}.target_id "
            f"AND {first} AND {ref}.param = ? AND {tgt}.deleted = {self.false} "
            f"AND ({' OR '.join(per_target)})"
        )
        if drive:
            return f"{alias}.pk IN (SELECT {ref}.res_pk {body})"
        return f"EXISTS (SELECT 1 {body})"

    def has(
        self, alias: str, types: tuple[str, ...], h: Has, args: list[Any], drive: bool = True
    ) -> str:
        """``_has:Type:ref:param=value`` (https://hl7.org/fhir/R4/search.html#has). Driving:
        the sources the inner criterion finds, their reference rows, then the targets by key
        (in that order on SQLite). Otherwise a probe of the reference rows that point at the
        candidate, by (type, param, target), and of each source."""
        ref, src = self._alias("ref"), self._alias("s")
        if not drive:
            args.extend([h.source_type, h.ref_code])
            inner = self.criterion(src, (h.source_type,), h.inner, args, drive=False)
            if self.restriction:  # _has may only look at sources the caller may see
                inner += " AND " + self.restricted(src, (h.source_type,), self.restriction, args)
            return (
                f"EXISTS (SELECT 1 FROM idx_reference {ref} CROSS JOIN resources {src} "
                f"WHERE {ref}.res_type = ? AND {ref}.param = ? "
                f"AND {ref}.target_id = {alias}.res_id AND {ref}.target_type = {alias}.res_type "
                f"AND {src}.pk = {ref}.res_pk AND {src}.deleted = {self.false} AND {inner})"
            )
        tgt = self._alias("t")
        inner = self.criterion(src, (h.source_type,), h.inner, args)
        if self.restriction:
            inner += " AND " + self.restricted(src, (h.source_type,), self.restriction, args)
        args.extend([h.source_type, h.ref_code])
        target = self._type_filter(f"{tgt}.res_type", types, args) if types else "1 = 1"
        return (
            f"{alias}.pk IN (SELECT {tgt}.pk FROM resources {src} "
            f"CROSS JOIN idx_reference {ref} CROSS JOIN resources {tgt} "
            f"WHERE {src}.deleted = {self.false} AND {inner} "
            f"AND {ref}.res_pk = {src}.pk AND {self.d.unindexed(ref + '.res_type')} = ? "
            f"AND {ref}.param = ? "
            f"AND {tgt}.res_type = {ref}.target_type AND {tgt}.res_id = {ref}.target_id "
            f"AND {target})"
        )

    def in_list(self, alias: str, types: tuple[str, ...], c: InList, args: list[Any]) -> str:
        """``_list``: the targets of the ``item`` reference rows of the named Lists
        (``List.entry.item``; https://hl7.org/fhir/R4/search.html#list), found from the
        List's own row: a unique-key lookup, then its rows, then each target's key."""
        lst, ref, tgt = self._alias("l"), self._alias("ref"), self._alias("t")
        args.extend(["List", *c.list_ids, "item"])
        sql = (
            f"{alias}.pk IN (SELECT {tgt}.pk FROM resources {lst} "
            f"JOIN idx_reference {ref} ON {ref}.res_pk = {lst}.pk "
            f"JOIN resources {tgt} ON {tgt}.res_type = {ref}.target_type "
            f"AND {tgt}.res_id = {ref}.target_id "
            f"WHERE {lst}.res_type = ? AND {lst}.res_id IN ({', '.join('?' * len(c.list_ids))}) "
            f"AND {lst}.deleted = {self.false} AND {ref}.param = ?"
        )
        if types:
            sql += " AND " + self._type_filter(f"{ref}.target_type", types, args)
        return sql + ")"

    def compartment(
        self, alias: str, types: tuple[str, ...], comp: tuple[str, str], args: list[Any],
        with_self: bool = False,
    ) -> str:
        """Membership of https://hl7.org/fhir/R4/compartmentdefinition.html compartments
        (`with_self`: and the compartment's own resource, as `$everything` wants); with the id
        ANY_COMPARTMENT_ID, of any compartment of that type (and every resource of the
        compartment type itself)."""
        ctype, cid = comp
        if cid == ANY_COMPARTMENT_ID:
            return self._any_compartment(alias, types, ctype, args)
        probes: list[str] = []  # one index probe per member type, in one IN (... UNION ALL ...)
        probe_args: list[Any] = []
        owns: list[str] = []
        own_args: list[Any] = []
        for t in types:
            params = [p for p in compartment_params(ctype, t) if p != SELF]
            if params:
                i = self._alias("c")
                probe_args.extend([t, *params, ctype, cid])
                probes.append(
                    f"SELECT {i}.res_pk FROM idx_reference {i} "
                    f"WHERE {i}.res_type = ? AND {i}.param IN ({', '.join('?' * len(params))}) "
                    f"AND {i}.target_type = ? AND {i}.target_id = ?"
                )
            if SELF in compartment_params(ctype, t) or (with_self and t == ctype):
                own_args.extend([t, cid])
                owns.append(f"({alias}.res_type = ? AND {alias}.res_id = ?)")
        alts = [f"{alias}.pk IN ({' UNION ALL '.join(probes)})"] if probes else []
        args.extend(probe_args + own_args)
        alts += owns
        return f"({' OR '.join(alts)})" if alts else "1 = 0"

    def _any_compartment(
        self, alias: str, types: tuple[str, ...], ctype: str, args: list[Any]
    ) -> str:
        """Members of some `ctype` compartment: a probe of each row's own reference rows (a
        type-level `$everything` pages through most of the table in pk order)."""
        parts: list[str] = []
        for t in types:
            params = [p for p in compartment_params(ctype, t) if p != SELF]
            if t == ctype:
                args.append(t)
                parts.append(f"{alias}.res_type = ?")
            elif params:
                i = self._alias("c")
                args.extend([t, *params, ctype])
                parts.append(
                    f"({alias}.res_type = ? AND EXISTS (SELECT 1 FROM idx_reference {i} "
                    f"WHERE {i}.res_pk = {alias}.pk AND {i}.param IN "
                    f"({', '.join('?' * len(params))}) AND {i}.target_type = ?))"
                )
        return f"({' OR '.join(parts)})" if parts else "1 = 0"

    # --- one parameter -------------------------------------------------------------------

    def clause(
        self, alias: str, types: tuple[str, ...], c: Clause, args: list[Any], drive: bool = True
    ) -> str:
        if c.code == "_id":
            return self._id_clause(alias, c, args)
        if c.code == "_lastUpdated":
            if c.missing is not None:
                return "1 = 0" if c.missing else "1 = 1"
            col = f"{alias}.last_updated_us"
            ors = [self._date_cond(col, col, v, args) for v in c.values]  # type: ignore[arg-type]
            return "(" + " OR ".join(ors) + ")"
        if c.code in WORD_PARAMS and c.missing is None:
            return self.words_clause(alias, types, c, args, drive)
        table = TABLE_OF_TYPE[c.param.type]
        i = self._alias("i")
        sub_args: list[Any] = []
        param = c.code + OF_TYPE_SUFFIX if c.modifier == "of-type" else c.code
        negated = c.missing is True or c.modifier in ("not", "not-in")
        if negated or not drive:
            # a probe of this resource's own rows through the (res_pk, param) index
            sub_args.append(param)
            probe = f"SELECT 1 FROM {table} {i} WHERE {i}.res_pk = {alias}.pk AND {i}.param = ?"
            if c.missing is None:
                ors = [self.value_cond(i, c, v, sub_args) for v in c.values]
                probe += f" AND ({' OR '.join(ors)})"
            args.extend(sub_args)
            return f"{'NOT ' if negated else ''}EXISTS ({probe})"
        tf = self._type_filter(f"{i}.res_type", types, sub_args)
        sub_args.append(param)
        head = f"SELECT {i}.res_pk FROM {table} {i} WHERE {tf} AND {i}.param = ?"
        if c.missing is not None:  # :missing=false
            args.extend(sub_args)
            return f"{alias}.pk IN ({head})"
        ors = [self.value_cond(i, c, v, sub_args) for v in c.values]
        args.extend(sub_args)
        return f"{alias}.pk IN ({head} AND ({' OR '.join(ors)}))"

    def words_clause(
        self, alias: str, types: tuple[str, ...], c: Clause, args: list[Any], drive: bool
    ) -> str:
        """``_text``/``_content``: any value (OR) whose every word (AND) is a word of the
        resource or the start of one: one prefix probe of the word rows per word, the
        longest word first (the likeliest to be rare) as the driver."""
        ors: list[str] = []
        for v in c.values:
            assert isinstance(v, WordsValue)
            ands: list[str] = []
            for n, word in enumerate(sorted(v.words, key=len, reverse=True)):
                i = self._alias("w")
                drives = drive and n == 0
                if drives:
                    rows = self._type_filter(f"{i}.res_type", types, args)
                else:
                    rows = f"{i}.res_pk = {alias}.pk"
                args.append(c.code)
                cond = self._prefix_cond(f"{i}.value_norm", word, args)
                sub = (f"SELECT {i}.res_pk FROM idx_string {i} "
                       f"WHERE {rows} AND {i}.param = ? AND {cond}")
                ands.append(f"{alias}.pk IN ({sub})" if drives else f"EXISTS ({sub})")
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")"

    def _id_clause(self, alias: str, c: Clause, args: list[Any]) -> str:
        if c.missing is not None:
            return "1 = 0" if c.missing else "1 = 1"
        ids = [v.code for v in c.values if isinstance(v, TokenValue) and v.code is not None]
        if not ids:
            return "1 = 0"
        args.extend(ids)
        op = "NOT IN" if c.modifier == "not" else "IN"
        return f"{alias}.res_id {op} ({', '.join('?' * len(ids))})"

    def value_cond(self, i: str, c: Clause, v: Value, args: list[Any]) -> str:
        """SQL condition on index row alias `i` for one value of clause `c`."""
        if isinstance(v, StringValue):
            return self._string_cond(f"{i}.value_norm", f"{i}.value_exact", c.modifier, v, args)
        if isinstance(v, TokenValue):
            return self._token_cond(f"{i}.system", f"{i}.code", v, args)
        if isinstance(v, TextValue):
            return self._text_cond(f"{i}.text_norm", v, args)
        if isinstance(v, ValueSetValue):
            return self._value_set_cond(f"{i}.system", f"{i}.code", v, args)
        if isinstance(v, DateValue):
            return self._date_cond(f"{i}.low_us", f"{i}.high_us", v, args)
        if isinstance(v, QuantityValue):
            return self._quantity_cond(i, v, args)
        if isinstance(v, NumberValue):
            return self._number_cond(f"{i}.low", f"{i}.high", v, args)
        if isinstance(v, ReferenceValue):
            return self._reference_cond(i, v, args)
        if isinstance(v, IdentifierValue):
            if v.type_code is not None:  # :of-type
                args.extend([f"{v.type_system or ''}|{v.type_code}", v.value])
                return f"({i}.system = ? AND {i}.code = ?)"
            args.append(v.value)
            if v.system is None:
                return f"{i}.id_value = ?"
            args.append(v.system)
            return f"({i}.id_value = ? AND {i}.id_system = ?)"
        if isinstance(v, UriValue):
            return self._uri_cond(f"{i}.uri", c.modifier, v, args)
        if isinstance(v, CompositeValue):
            return self._composite_cond(i, c.components, v, args)
        raise AssertionError(f"unhandled value {v!r}")

    def _string_cond(
        self, norm_col: str, exact_col: str, modifier: str | None, v: StringValue, args: list[Any]
    ) -> str:
        if modifier == "exact":
            args.extend([v.norm, v.exact])
            return f"({norm_col} = ? AND {exact_col} = ?)"
        if modifier == "contains":
            args.append("%" + like_escape(v.norm) + "%")
            return f"{norm_col} LIKE ? ESCAPE '\\'"
        return self._prefix_cond(norm_col, v.norm, args)

    def _prefix_cond(self, col: str, prefix: str, args: list[Any]) -> str:
        upper = prefix_upper(prefix)
        if upper is None:
            return f"{col} IS NOT NULL"
        args.extend([prefix, upper])
        return f"({col} >= ? AND {col} < ?)"

    def _text_cond(self, col: str, v: TextValue, args: list[Any]) -> str:
        starts = self._prefix_cond(col, v.norm, args)
        args.append("% " + like_escape(v.norm) + "%")
        return f"({starts} OR {col} LIKE ? ESCAPE '\\')"

    def _token_cond(self, sys_col: str, code_col: str, v: TokenValue, args: list[Any]) -> str:
        conds = []
        if v.code is not None:
            args.append(v.code)
            conds.append(f"{code_col} = ?")
        else:
            conds.append(f"{code_col} <> ''")
        if v.system is not None:
            args.append(v.system)
            conds.append(f"{sys_col} = ?")
        return "(" + " AND ".join(conds) + ")"

    def _value_set_cond(
        self, sys_col: str, code_col: str, v: ValueSetValue, args: list[Any]
    ) -> str:
        """:in / :not-in: a (system, code) of the value set's expansion."""
        ors: list[str] = []
        for system, codes in v.codes:
            args.append(system)
            args.extend(codes)
            ors.append(f"({sys_col} = ? AND {code_col} IN ({', '.join('?' * len(codes))}))")
        return "(" + " OR ".join(ors) + ")" if ors else "1 = 0"

    def _date_cond(self, lo: str, hi: str, v: DateValue, args: list[Any]) -> str:
        p = v.prefix
        if p == "eq":
            args.extend([v.low, v.high])
            return f"({lo} >= ? AND {hi} <= ?)"
        if p == "ne":
            args.extend([v.low, v.high])
            return f"NOT ({lo} >= ? AND {hi} <= ?)"
        if p == "gt":
            args.append(v.high)
            return f"{hi} > ?"
        if p == "lt":
            args.append(v.low)
            return f"{lo} < ?"
        if p == "ge":
            args.append(v.low)
            return f"{hi} >= ?"
        if p == "le":
            args.append(v.high)
            return f"{lo} <= ?"
        if p == "sa":
            args.append(v.high)
            return f"{lo} > ?"
        if p == "eb":
            args.append(v.low)
            return f"{hi} < ?"
        # ap: within 10% of the distance from now, at least a day
        now = int(time.time() * 1_000_000)
        mid = (v.low + v.high) // 2
        margin = max(abs(now - mid) // 10, _US_PER_DAY)
        args.extend([min(v.high + margin, DATE_MAX), max(v.low - margin, DATE_MIN)])
        return f"({lo} <= ? AND {hi} >= ?)"

    def _number_cond(self, lo: str, hi: str, v: NumberValue, args: list[Any]) -> str:
        p = v.prefix
        if p in ("eq", "ne"):
            args.extend([v.low, v.high])
            cond = f"({lo} >= ? AND {hi} < ?)"
            return cond if p == "eq" else f"NOT {cond}"
        if p == "ap":
            margin = abs(v.value) * 0.1
            args.extend([v.value + margin, v.value - margin])
            return f"({lo} <= ? AND {hi} >= ?)"
        col, op = {
            "gt": (hi, ">"),
            "lt": (lo, "<"),
            "ge": (hi, ">="),
            "le": (lo, "<="),
            "sa": (lo, ">"),
            "eb": (hi, "<"),
        }[p]
        args.append(v.value)
        return f"{col} {op} ?"

    def _quantity_cond(self, i: str, v: QuantityValue, args: list[Any]) -> str:
        raw = [self._number_cond(f"{i}.low", f"{i}.high", v.number, args)]
        if v.system is not None:
            args.append(v.system)
            raw.append(f"{i}.system = ?")
        if v.code is not None:
            if v.system is not None:
                args.append(v.code)
                raw.append(f"{i}.code = ?")
            else:
                args.extend([v.code, v.code])
                raw.append(f"({i}.code = ? OR {i}.unit = ?)")
        cond = "(" + " AND ".join(raw) + ")"
        if v.canon is None:
            return cond
        args.append(v.canon_code)
        canon = self._number_cond(f"{i}.canon_low", f"{i}.canon_high", v.canon, args)
        return f"({cond} OR ({i}.canon_code = ? AND {canon}))"

    def _reference_cond(self, i: str, v: ReferenceValue, args: list[Any]) -> str:
        if v.url is not None:
            args.append(v.url)
            return f"{i}.url = ?"
        if v.type is not None:
            args.extend([v.id, v.type])
            return f"({i}.target_id = ? AND {i}.target_type = ?)"
        args.append(v.id)
        return f"{i}.target_id = ?"

    def _uri_cond(self, col: str, modifier: str | None, v: UriValue, args: list[Any]) -> str:
        if modifier == "below":
            return self._prefix_cond(col, v.uri, args)
        if modifier == "above":
            anc = uri_ancestors(v.uri)
            args.extend(anc)
            return f"{col} IN ({', '.join('?' * len(anc))})"
        args.append(v.uri)
        return f"{col} = ?"

    def _composite_cond(
        self, i: str, comps: tuple[SearchParameter, ...], v: CompositeValue, args: list[Any]
    ) -> str:
        conds: list[str] = []
        for n, (_sp, part) in enumerate(zip(comps, v.parts, strict=True), start=1):
            a, b, lo, hi = (f"{i}.c{n}_{k}" for k in ("a", "b", "lo", "hi"))
            if isinstance(part, TokenValue):
                conds.append(self._token_cond(a, b, part, args))
            elif isinstance(part, QuantityValue):
                args.append(CANONICAL_MARK)
                sub = [f"{a} <> ?", self._number_cond(lo, hi, part.number, args)]
                if part.system is not None:
                    args.append(part.system)
                    sub.append(f"{a} = ?")
                if part.code is not None:
                    args.append(part.code)
                    sub.append(f"{b} = ?")
                raw = "(" + " AND ".join(sub) + ")"
                if part.canon is not None:
                    args.extend([CANONICAL_MARK, part.canon_code])
                    canon = self._number_cond(lo, hi, part.canon, args)
                    raw = f"({raw} OR ({a} = ? AND {b} = ? AND {canon}))"
                conds.append(raw)
            elif isinstance(part, DateValue):
                conds.append(self._date_cond(lo, hi, part, args))
            elif isinstance(part, NumberValue):
                conds.append(self._number_cond(lo, hi, part, args))
            elif isinstance(part, StringValue):
                conds.append(self._prefix_cond(a, part.norm, args))
            elif isinstance(part, ReferenceValue):
                if part.type is not None:
                    args.append(part.type)
                    conds.append(f"{a} = ?")
                args.append(part.id or part.url)
                conds.append(f"{b} = ?")
            elif isinstance(part, UriValue):
                args.append(part.uri)
                conds.append(f"{a} = ?")
        return "(" + " AND ".join(conds) + ")"

    # --- sorting ---------------------------------------------------------------------------

    def sort_expr(self, alias: str, key: SortKey, args: list[Any]) -> tuple[str, bool]:
        """(SQL expression, is_text) giving a non-null sort key for one resource."""
        if key.code == "_id":
            return f"{alias}.res_id", True
        if key.code == "_lastUpdated":
            return f"{alias}.last_updated_us", False
        sp = key.param
        assert sp is not None
        agg = "MAX" if key.desc else "MIN"
        table = TABLE_OF_TYPE[sp.type]
        col, is_text, is_int = {
            "string": ("{j}.value_norm", True, False),
            "token": ("{j}.code", True, False),
            "uri": ("{j}.uri", True, False),
            "reference": ("COALESCE({j}.target_id, {j}.url)", True, False),
            "date": ("{j}.high_us" if key.desc else "{j}.low_us", False, True),
            "number": ("{j}.high" if key.desc else "{j}.low", False, False),
            "quantity": ("{j}.high" if key.desc else "{j}.low", False, False),
        }[sp.type]
        j = self._alias("k")
        args.append(key.code)
        sub = (
            f"(SELECT {agg}({col.format(j=j)}) FROM {table} {j} "
            f"WHERE {j}.res_pk = {alias}.pk AND {j}.param = ?)"
        )
        if is_text:
            args.append("" if key.desc else TEXT_LAST)
        elif is_int:
            args.append(-INT_LAST if key.desc else INT_LAST)
        else:
            args.append(-REAL_LAST if key.desc else REAL_LAST)
        return f"COALESCE({sub}, ?)", is_text
