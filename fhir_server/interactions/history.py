"""history at instance, type and system level with _since, _at and _count
(https://hl7.org/fhir/R4/http.html#history). Pages continue from the last entry served, so
versions written meanwhile do not shift later pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.access import require_visible, restrictions
from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import etag, not_found
from fhir_server.routing import Route
from fhir_server.search.query import QueryBuilder
from fhir_server.store.base import HistoryQuery, Queryable, StoredResource
from fhir_server.timeutil import now_us, parse_instant_us, to_instant

_PAGE_OFFSET = "_getpagesoffset"
_PAGE_UNTIL = "_until"
_PAGE_BEFORE = "_getpagesbefore"


def _int_param(req: FhirRequest, name: str, default: int, low: int, high: int) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise FhirError.of(400, "invalid", f"{name} must be a non-negative integer, not '{raw}'")
    return max(low, min(high, int(raw)))


def _instant(req: FhirRequest, name: str) -> tuple[int, int] | None:
    raw = req.param(name)
    if raw is None:
        return None
    rng = parse_instant_us(raw)
    if rng is None:
        raise FhirError.of(400, "invalid", f"{name} '{raw}' is not a FHIR instant or dateTime")
    return rng


def history(ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
    """A `history` Bundle, newest version first. Paging is by position, not offset: a next link
    carries the instant of the last entry served (`_until`), how many entries of that very
    instant were served (`_getpagesoffset`) and how many newer ones (`_getpagesbefore`), so a
    version committed late with an earlier instant cannot shift the later pages: each version
    that existed when the first page was read comes exactly once
    (https://hl7.org/fhir/R4/http.html#paging)."""
    source = ctx.tx or ctx.store
    visible: tuple[str | None, list[Any]] = (None, [])
    if route.interaction == "history-instance":
        assert route.res_type and route.res_id
        if source.read(route.res_type, route.res_id) is None:
            raise not_found(route.res_type, route.res_id)
        require_visible(ctx, source, "read", route.res_type, route.res_id)
    else:  # only versions of resources the caller may see (fhir_server.access)
        visible = _visible_condition(ctx, req, source, route.res_type)
    cfg = ctx.config
    count = _int_param(req, "_count", cfg.default_page_size, 0, cfg.max_page_size)
    ties = _int_param(req, _PAGE_OFFSET, 0, 0, 2**62)  # entries at `until` already served
    before = _int_param(req, _PAGE_BEFORE, 0, 0, 2**62)  # entries newer than `until` served
    since = _instant(req, "_since")
    at = _instant(req, "_at")
    until_raw = req.param(_PAGE_UNTIL)
    until = int(until_raw) if until_raw and until_raw.isdigit() else now_us()
    q = HistoryQuery(
        res_type=route.res_type, res_id=route.res_id, since_us=since[0] if since else None,
        at_range=at, count=count, offset=ties, until_us=until,
        visible_sql=visible[0], visible_args=tuple(visible[1]),
    )
    # `remaining` counts the `ties` already served too
    versions, remaining = (ctx.tx or ctx.store).history(q)
    total = before + remaining
    path = "/".join(p for p in (route.res_type, route.res_id) if p)
    base = f"{req.base_url}/{path + '/' if path else ''}_history"
    kept = [(k, v) for k, v in req.query if k in ("_since", "_at", "_count", "_format")]
    links = [{"relation": "self", "url": f"{base}?{urlencode(req.query)}" if req.query else base}]
    if versions and ties + len(versions) < remaining:
        last = versions[-1].last_updated_us
        next_ties = sum(1 for v in versions if v.last_updated_us == last)
        if last == until:
            next_ties += ties
        served = before + ties + len(versions)
        query = urlencode([*kept, (_PAGE_UNTIL, str(last)), (_PAGE_OFFSET, str(next_ties)),
                           (_PAGE_BEFORE, str(served - next_ties))])
        links.append({"relation": "next", "url": f"{base}?{query}"})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "meta": {"lastUpdated": to_instant(now_us())},
        "total": total,
        "link": links,
        "entry": [_entry(req.base_url, v) for v in versions],
    }
    return FhirResponse(200, resource=bundle)


def _visible_condition(
    ctx: Context, req: FhirRequest, source: Queryable, res_type: str | None
) -> tuple[str | None, list[Any]]:
    """The SQL condition on the current row `r` of a resource for its versions to be listed:
    the caller's search restrictions, judged by what the resource is now (a deleted resource
    has no index rows, so a compartment grant lists none of its versions)."""
    found = restrictions(ctx, req, "search")
    if not found:
        return None, []
    args: list[Any] = []
    cond = QueryBuilder(source.dialect).restricted("r", (res_type,) if res_type else (),
                                                   found, args)
    return (None, []) if cond == "1 = 1" else (cond, args)


def _entry(base_url: str, v: StoredResource) -> dict[str, Any]:
    url = f"{v.res_type}/{v.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{url}"}
    if v.body is not None:
        entry["resource"] = orjson.Fragment(v.body)
    entry["request"] = {"method": v.method, "url": v.res_type if v.method == "POST" else url}
    status = "201 Created" if v.version == 1 else ("204 No Content" if v.deleted else "200 OK")
    entry["response"] = {
        "status": status,
        "etag": etag(v.version),
        "lastModified": to_instant(v.last_updated_us),
    }
    return entry
