"""The last N Observations per code: the query behind `Observation/$lastn`
(https://hl7.org/fhir/R4/observation-operation-lastn.html).

The matches of an ordinary Observation search (criteria, compartment and access restrictions
in the same SQL as any search) are grouped by `Observation.code` and ranked by effective date,
newest first, with a window function over the token and date index rows:
``RANK() OVER (PARTITION BY system, code ORDER BY effective DESC)``. RANK keeps ties, as the
operation asks ("both will be returned"). Codings of one Observation are equivalent
(the grouping "SHALL follow the transitive property of equality"): a second query lists the
distinct pairs of group keys that occur together in one match, and the partitions they link
are merged. A match in the top `max` of its merged group is in the top `max` of each of its own
partitions, and every match newer than it is too, so the window's survivors are enough to rank
the merged groups. A
text-only code is grouped by its text, as indexed (normalised: case and accents folded)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fhir_server.search.model import SearchRequest
from fhir_server.search.query import INT_LAST, QueryBuilder, Sql
from fhir_server.store.base import Queryable

Key = tuple[str, str, str]  # (system, code, text): one coding, or the text of a text-only code


def _group_rows(where: Sql) -> Sql:
    """(pk, system, code, text) of each group key of each match: its codings, or for a
    code without codings its text rows."""
    args = ["code", "code", *where.args]
    text = (
        "SELECT r.pk AS pk, c.system AS gsys, c.code AS gcode, "
        "CASE WHEN c.code = '' THEN COALESCE(c.text_norm, '') ELSE '' END AS gtext "
        "FROM resources r JOIN idx_token c ON c.res_pk = r.pk AND c.param = ? "
        "WHERE (c.code <> '' OR NOT EXISTS (SELECT 1 FROM idx_token c2 WHERE c2.res_pk = r.pk "
        f"AND c2.param = ? AND c2.code <> '')) AND {where.text}"
    )
    return Sql(text, args)


def _ranked(q: Queryable, groups: Sql, max_per_code: int) -> list[tuple[int, Key, int]]:
    """(pk, key, effective) of the matches in the top `max_per_code` (ties kept) of one of
    their own partitions; an Observation without an effective date ranks last."""
    args: list[Any] = ["date", -INT_LAST, *groups.args, max_per_code]
    sql = (
        "SELECT w.pk, w.gsys, w.gcode, w.gtext, w.eff FROM ("
        "SELECT e.pk, e.gsys, e.gcode, e.gtext, e.eff, RANK() OVER ("
        "PARTITION BY e.gsys, e.gcode, e.gtext ORDER BY e.eff DESC) AS rn FROM ("
        "SELECT g.pk, g.gsys, g.gcode, g.gtext, COALESCE((SELECT MAX(d.high_us) FROM idx_date d "
        "WHERE d.res_pk = g.pk AND d.param = ?), ?) AS eff "
        f"FROM ({groups.text}) g) e) w WHERE w.rn <= ?"
    )
    return [(int(pk), (str(s or ""), str(c or ""), str(t or "")), int(eff))
            for pk, s, c, t, eff in q.query(sql, args)]


def _links(q: Queryable, groups: Sql) -> list[tuple[Key, Key]]:
    """The distinct pairs of group keys that occur together in one match."""
    sql = (
        f"WITH g AS ({groups.text}), m AS (SELECT pk FROM g GROUP BY pk HAVING COUNT(*) > 1) "
        "SELECT DISTINCT a.gsys, a.gcode, a.gtext, b.gsys, b.gcode, b.gtext "
        "FROM m JOIN g a ON a.pk = m.pk JOIN g b ON b.pk = m.pk "
        "WHERE a.gsys < b.gsys OR (a.gsys = b.gsys AND (a.gcode < b.gcode "
        "OR (a.gcode = b.gcode AND a.gtext < b.gtext)))"
    )
    return [((str(a or ""), str(b or ""), str(c or "")), (str(d or ""), str(e or ""), str(f or "")))
            for a, b, c, d, e, f in q.query(sql, groups.args)]


class _Groups:
    """Union-find over group keys: the transitive closure of "coded together"."""

    def __init__(self) -> None:
        self.parent: dict[Key, Key] = {}

    def find(self, k: Key) -> Key:
        root = k
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while k != root:  # path compression
            self.parent[k], k = root, self.parent.get(k, k)
        return root

    def join(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest key names the group


def last_n(q: Queryable, req: SearchRequest, max_per_code: int) -> list[int]:
    """pks of the newest `max_per_code` matches of `req` (an Observation search) per code
    group (ties kept): groups in order of their smallest (system, code, text), each newest
    first."""
    b = QueryBuilder(q.dialect)
    groups = _group_rows(b.where(req))
    ranked = _ranked(q, groups, max_per_code)
    if not ranked:
        return []
    merged = _Groups()
    if len({key for _, key, _ in ranked}) > 1:  # else no link can merge anything
        for a, k in _links(q, groups):
            merged.join(a, k)
    by_group: dict[Key, dict[int, int]] = defaultdict(dict)
    for pk, key, eff in ranked:
        by_group[merged.find(key)][pk] = eff
    out: list[int] = []
    for root in sorted(by_group):
        members = sorted(by_group[root].items(), key=lambda m: (-m[1], -m[0]))
        effs = [eff for _, eff in members]
        # RANK: one more than the number of newer matches in the group
        out.extend(pk for pk, eff in members if effs.index(eff) < max_per_code)
    return out
