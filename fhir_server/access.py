"""Row-level access: which resources the caller of a request may see or change.

The `restrict` hooks (fhir_server.hooks) say it, per action, as Restrictions; this module and
the search engine apply them everywhere data leaves or changes: search matches, totals, chain
targets, `_has` sources and included resources (in SQL), history (in SQL), read and vread, and
every write (the resource before and after). A plugin that decides who may see what (the SMART
layer, smart_apps.enforce) only computes Restrictions; it never filters results itself.
Compartments are the R4 CompartmentDefinitions
(https://hl7.org/fhir/R4/compartmentdefinition.html)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_server.errors import FhirError
from fhir_server.store.base import Queryable

if TYPE_CHECKING:
    from fhir_server.context import Context
    from fhir_server.request import FhirRequest

ACTIONS = ("read", "search", "create", "update", "delete")
"""What a restriction is asked for: read (read, vread, history of one resource, included
resources), search (search matches, chain targets, `_has` sources, type and system history),
create, update (and patch), delete."""


@dataclass(frozen=True)
class Grant:
    """One slice of what a caller may see: resources of `types` (None: every type) that are
    members of `compartment` (type, id) when it is set and match every search parameter of
    `criteria` (as a query string would give them, e.g. `("category", "sys|vital-signs")`).
    A type that cannot be a member of the compartment gets nothing from a compartment grant."""

    types: frozenset[str] | None = None
    compartment: tuple[str, str] | None = None
    criteria: tuple[tuple[str, str], ...] = ()

    def covers(self, res_type: str) -> bool:
        """Whether this grant says anything about `res_type`."""
        return self.types is None or res_type in self.types

    @property
    def whole(self) -> bool:
        """Every resource of the covered types, without condition."""
        return self.compartment is None and not self.criteria


@dataclass(frozen=True)
class Restriction:
    """A resource is allowed when any of `grants` allows it; no grant allows nothing."""

    grants: tuple[Grant, ...]
    reason: str = "outside the access granted"  # for the 403's diagnostics

    def allows_type(self, res_type: str) -> bool:
        """Whether some resource of `res_type` may be allowed."""
        return any(g.covers(res_type) for g in self.grants)

    def whole_type(self, res_type: str) -> bool:
        """Whether every resource of `res_type` is allowed."""
        return any(g.covers(res_type) and g.whole for g in self.grants)


def restrictions(ctx: Context, req: FhirRequest | None, action: str) -> tuple[Restriction, ...]:
    """The restrictions the `restrict` hooks set for `action` on `req` (all apply; empty: no
    restriction), computed once per request and action."""
    if req is None:
        return ()
    cached = req.restrictions.get(action)
    if cached is None:
        out: list[Restriction] = []
        ctx.hooks.run("restrict", ctx, req, action, out)
        cached = req.restrictions[action] = tuple(out)
    return cached


def require_visible(
    ctx: Context, q: Queryable, action: str, res_type: str, res_id: str
) -> None:
    """403 unless the current `res_type/res_id` (as indexed in `q`, which may be an open write
    transaction) is inside every restriction of `action` for the request being served. A
    resource that does not exist at all passes: the caller answers 404 for it, as it would to
    an unrestricted client (a deleted one stays outside a restriction)."""
    found = restrictions(ctx, ctx.request, action)
    if not found:
        return
    if not ctx.search_engine.visible(q, res_type, res_id, found) and q.query(
            "SELECT 1 FROM resources WHERE res_type = ? AND res_id = ?", (res_type, res_id)):
        reasons = "; ".join(dict.fromkeys(r.reason for r in found))
        raise FhirError.of(
            403, "forbidden", f"{action} of {res_type}/{res_id} is not permitted: {reasons}"
        )
