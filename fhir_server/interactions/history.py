"""history at instance, type and system level with _since, _at and _count
(https://hl7.org/fhir/R4/http.html#history). Pages are pinned to the instant of the first
page, so versions written meanwhile do not shift later pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import etag, not_found
from fhir_server.routing import Route
from fhir_server.store.base import HistoryQuery, StoredResource
from fhir_server.timeutil import now_us, parse_instant_us, to_instant

_PAGE_OFFSET = "_getpagesoffset"
_PAGE_UNTIL = "_until"


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
    """A `history` Bundle, newest version first."""
    if route.interaction == "history-instance":
        assert route.res_type and route.res_id
        if ctx.store.read(route.res_type, route.res_id) is None:
            raise not_found(route.res_type, route.res_id)
    cfg = ctx.config
    count = _int_param(req, "_count", cfg.default_page_size, 0, cfg.max_page_size)
    offset = _int_param(req, _PAGE_OFFSET, 0, 0, 2**62)
    since = _instant(req, "_since")
    at = _instant(req, "_at")
    until_raw = req.param(_PAGE_UNTIL)
    until = int(until_raw) if until_raw and until_raw.isdigit() else now_us()
    q = HistoryQuery(
        res_type=route.res_type, res_id=route.res_id, since_us=since[0] if since else None,
        at_range=at, count=count, offset=offset, until_us=until,
    )
    versions, total = ctx.store.history(q)
    path = "/".join(p for p in (route.res_type, route.res_id) if p)
    base = f"{req.base_url}/{path + '/' if path else ''}_history"
    kept = [(k, v) for k, v in req.query if k in ("_since", "_at", "_count", "_format")]

    def link(rel: str, off: int) -> dict[str, str]:
        query = urlencode([*kept, (_PAGE_UNTIL, str(until)), (_PAGE_OFFSET, str(off))])
        return {"relation": rel, "url": f"{base}?{query}"}

    links = [{"relation": "self", "url": f"{base}?{urlencode(req.query)}" if req.query else base}]
    if count and offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "meta": {"lastUpdated": to_instant(now_us())},
        "total": total,
        "link": links,
        "entry": [_entry(req.base_url, v) for v in versions],
    }
    return FhirResponse(200, resource=bundle)


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
