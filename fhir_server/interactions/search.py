"""The search interaction: a searchset Bundle (https://hl7.org/fhir/R4/http.html#search,
https://hl7.org/fhir/R4/search.html, https://hl7.org/fhir/R4/bundle.html#searchset)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson

from fhir_server.access import restrictions
from fhir_server.context import Context
from fhir_server.errors import FhirError, operation_outcome
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.search.elements import subset
from fhir_server.search.engine import SearchResult
from fhir_server.search.parse import parse_search
from fhir_server.store.base import Queryable, StoredResource
from fhir_server.timeutil import now_us, to_instant
from resources import json_numbers
from resources.compartments import compartment_resource_types, is_compartment_type


class BodySource(Queryable, Protocol):
    """Where search SQL runs and result bodies come from (a store or an open transaction)."""

    def load_bodies(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        """Current versions by row key."""
        ...


def search(
    ctx: Context,
    req: FhirRequest,
    res_type: str | None,
    compartment: tuple[str, str] | None,
) -> FhirResponse:
    """Search `res_type` (None: system level, or every type of the compartment)."""
    source: BodySource = ctx.tx if ctx.tx is not None else ctx.store
    config = ctx.config
    strict = req.prefer.get("handling") == "strict"
    if compartment is not None and not is_compartment_type(compartment[0]):
        raise FhirError.of(404, "not-found", f"{compartment[0]} has no compartment")
    request = parse_search(
        res_type,
        req.query,
        strict,
        compartment,
        req.base_url,
        default_count=config.default_page_size,
        max_count=config.max_page_size,
    )
    if compartment is not None and not request.types:
        request.types = compartment_resource_types(compartment[0])
    request.restriction = restrictions(ctx, req, "search")
    request.include_restriction = restrictions(ctx, req, "read")
    result = ctx.search_engine.execute(source, request)
    bundle = searchset(req, res_type, compartment, result, source)
    return FhirResponse(200, resource=bundle)


_FORMAT_PARAMS = ("_format", "_pretty")


def _link(
    req: FhirRequest,
    res_type: str | None,
    compartment: tuple[str, str] | None,
    params: list[tuple[str, str]],
) -> str:
    path = req.base_url.rstrip("/")
    if compartment is not None:
        path += f"/{compartment[0]}/{quote(compartment[1], safe='')}/{res_type or '*'}"
    elif res_type is not None:
        path += f"/{res_type}"
    if not params:
        return path
    return path + "?" + urlencode(params, safe=":|,/$*", quote_via=quote)


def searchset(
    req: FhirRequest,
    res_type: str | None,
    compartment: tuple[str, str] | None,
    result: SearchResult,
    source: BodySource,
    link_path: str | None = None,
    link_params: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The searchset Bundle of one page. Its links repeat the search; an operation that
    answers with a searchset (`$everything`, `$lastn`) gives its own `link_path` (below the
    base) and `link_params` instead, and pages with `_cursor` like a search."""
    sr = result.request
    base = req.base_url.rstrip("/")
    applied = list(sr.applied if link_params is None else link_params)
    # the links answer in the format asked for (https://hl7.org/fhir/R4/http.html#paging)
    applied += [(k, v) for k, v in req.query if k in _FORMAT_PARAMS and (k, v) not in applied]

    def link(params: list[tuple[str, str]]) -> str:
        if link_path is None:
            return _link(req, res_type, compartment, params)
        query = "?" + urlencode(params, safe=":|,/$*", quote_via=quote) if params else ""
        return f"{base}/{link_path}{query}"

    self_params = applied + ([("_cursor", sr.cursor)] if sr.cursor else [])
    links = [{"relation": "self", "url": link(self_params)}]
    if result.next_cursor:
        links.append({"relation": "next", "url": link(applied + [("_cursor", result.next_cursor)])})
    if result.prev_cursor:
        url = link(applied + [("_cursor", result.prev_cursor)])
        links.append({"relation": "previous", "url": url})
    bodies = source.load_bodies(result.pks + result.include_pks) if result.pks else {}
    entries: list[dict[str, Any]] = []
    whole = sr.summary in (None, "false") and not sr.elements
    for pk, mode in [(p, "match") for p in result.pks] + [
        (p, "include") for p in result.include_pks
    ]:
        stored = bodies.get(pk)
        if stored is None or stored.body is None:
            continue  # deleted between the search and the load
        resource: Any
        if whole:  # the stored bytes, spliced into the Bundle unparsed (brief: reads serve them)
            resource = orjson.Fragment(stored.body)
        else:
            resource = subset(json_numbers.loads(stored.body), sr.summary, sr.elements)
        entries.append(
            {
                "fullUrl": f"{base}/{stored.res_type}/{stored.res_id}",
                "resource": resource,
                "search": {"mode": mode},
            }
        )
    if result.warnings:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": operation_outcome(result.warnings),
                "search": {"mode": "outcome"},
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": to_instant(now_us())},
        "type": "searchset",
    }
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle
