"""transaction and batch (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is one database transaction: entries run in the order DELETE, POST, PUT/PATCH,
GET; urn:uuid fullUrls and conditional references are rewritten to the ids they resolve to;
any failure rolls everything back. A batch runs each entry on its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.interactions.conditional import matching_ids
from fhir_server.interactions.create import create_criteria, new_id
from fhir_server.interactions.update import check_no_match_target
from fhir_server.negotiation import FHIR_JSON, check_body_type
from fhir_server.patching.formats import patch_of_resource
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.responses import written
from fhir_server.routing import Route, route, valid_id
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import from_http_date, to_instant
from fhir_server.writes import check_resource, parse_json_body, store_resource
from resources import json_numbers

log = logging.getLogger("telefhir")

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_HEADER_FIELDS = {
    "ifMatch": "if-match",
    "ifNoneMatch": "if-none-match",
    "ifNoneExist": "if-none-exist",
    "ifModifiedSince": "if-modified-since",
}


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    path: str
    query: list[tuple[str, str]]
    full_url: str | None
    resource: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    assigned_id: str | None = None  # POST: the id it will get
    existing_id: str | None = None  # conditional POST that matched


def process_bundle(ctx: Context, req: FhirRequest, _route: Route) -> FhirResponse:
    """POST [base] with a transaction or batch Bundle."""
    check_body_type(req, {FHIR_JSON, "application/json"})
    bundle = parse_json_body(req.body)
    if bundle.get("resourceType") != "Bundle":
        raise FhirError.of(400, "invalid", "POST to the base URL takes a Bundle", "resourceType")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise FhirError.of(
            400, "invalid", f"Bundle.type must be transaction or batch, not '{btype}'",
            "Bundle.type",
        )
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise FhirError.of(400, "structure", "Bundle.entry must be an array", "Bundle.entry")
    if btype == "transaction":
        entries = [_parse_entry(req, i, e) for i, e in enumerate(raw_entries)]
        responses = _transaction(ctx, req, entries)
    else:
        responses = _batch(ctx, req, raw_entries)
    return FhirResponse(
        200,
        resource={"resourceType": "Bundle", "type": f"{btype}-response", "entry": responses},
    )


def _fail(index: int, message: str, status: int = 400, code: str = "invalid") -> FhirError:
    return FhirError.of(status, code, f"Bundle.entry[{index}]: {message}",
                        f"Bundle.entry[{index}]")


def _parse_entry(req: FhirRequest, index: int, raw: Any) -> _Entry:
    if not isinstance(raw, dict):
        raise _fail(index, "an entry must be a JSON object", code="structure")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise _fail(index, "entry.request (method and url) is required", code="required")
    method = str(request.get("method", "")).upper()
    url = request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise _fail(index, f"entry.request needs a method (GET, POST, PUT, PATCH, DELETE) and "
                           f"a url; got {method or '(none)'} {url!r}")
    if url.startswith(req.base_url + "/"):
        url = url[len(req.base_url) + 1:]
    parts = urlsplit(url)
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise _fail(index, "entry.resource must be a JSON object", code="structure")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise _fail(index, f"a {method} entry needs a resource", code="required")
    headers = {h: str(request[f]) for f, h in _HEADER_FIELDS.items() if f in request}
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    return _Entry(index, method, url, parts.path.strip("/"),
                  parse_qsl(parts.query, keep_blank_values=True), full_url, resource, headers)


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _response_entry(req: FhirRequest, resp: FhirResponse) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _status(resp.status)}
    h = resp.headers
    if "Location" in h or "Content-Location" in h:
        response["location"] = h.get("Location", h.get("Content-Location"))
    if "ETag" in h:
        response["etag"] = h["ETag"]
    if "Last-Modified" in h:
        meta = json_numbers.loads(resp.raw).get("meta", {}) if resp.raw is not None else {}
        if "lastUpdated" in meta:
            response["lastModified"] = meta["lastUpdated"]
        else:  # Prefer: return=minimal or OperationOutcome: the header, to the second
            since = from_http_date(h["Last-Modified"])
            if since is not None:
                response["lastModified"] = to_instant(since)
    out: dict[str, Any] = {}
    location = response.get("location")
    if location and "/_history/" in location and resp.status < 300:
        out["fullUrl"] = location.split("/_history/")[0]
    if resp.raw is not None:
        out["resource"] = orjson.Fragment(resp.raw)
    elif resp.resource is not None:
        if resp.resource.get("resourceType") == "OperationOutcome":
            response["outcome"] = resp.resource
        else:
            out["resource"] = resp.resource
    out["response"] = response
    return out


def _sub_request(req: FhirRequest, e: _Entry, body: bytes, ctype: str = FHIR_JSON) -> FhirRequest:
    headers = {"prefer": req.header("prefer") or "", **e.headers}
    if body:
        headers["content-type"] = ctype
    return FhirRequest(e.method, e.path, e.query, headers, body, req.base_url,
                       principal=req.principal, remote_addr=req.remote_addr)


def _entry_body(e: _Entry) -> tuple[bytes, str]:
    """The body of an entry's request and its media type. A PATCH entry carries a Binary (JSON
    Patch, JSON Merge Patch) or a Parameters resource (FHIRPath Patch)
    (https://hl7.org/fhir/R4/http.html#patch)."""
    if e.method == "PATCH":
        assert e.resource is not None
        try:
            ctype, body = patch_of_resource(e.resource)
        except FhirError as err:
            issue = err.issues[0]
            raise _fail(e.index, issue.diagnostics, err.status, issue.code) from err
        return body, ctype
    if e.resource is not None:
        return json_numbers.dumps(e.resource), FHIR_JSON
    return b"", FHIR_JSON


def _dispatch(ctx: Context, req: FhirRequest, e: _Entry) -> FhirResponse:
    from fhir_server.interactions.registry import interactions

    sub = _sub_request(req, e, *_entry_body(e))
    r = route(sub.method, sub.path)
    if r.interaction in ("bundle", "history-system", "search-system") and e.method != "GET":
        raise _fail(e.index, f"{e.method} {e.url} is not allowed inside a Bundle")
    sub_ctx = ctx.serving(sub)
    sub_ctx.hooks.run("authorize", sub_ctx, sub, r)
    return interactions()[r.interaction].handler(sub_ctx, sub, r)


def _authorize_entries(ctx: Context, req: FhirRequest, entries: list[_Entry]) -> None:
    """Every entry of a transaction passes the `authorize` hooks before any runs: one refused
    entry fails the transaction whole (https://hl7.org/fhir/R4/http.html#trules)."""
    for e in entries:
        try:
            sub = _sub_request(req, e, b"")
            ctx.hooks.run("authorize", ctx.serving(sub), sub, route(e.method, e.path))
        except FhirError as err:
            msg = "; ".join(i.diagnostics for i in err.issues)
            raise FhirError(err.status, [Issue(
                "error", err.issues[0].code if err.issues else "forbidden",
                f"Bundle.entry[{e.index}] ({e.method} {e.url}): {msg}",
                (f"Bundle.entry[{e.index}]",))], dict(err.headers)) from err


# -- transaction ---------------------------------------------------------------------------


def _transaction(ctx: Context, req: FhirRequest, entries: list[_Entry]) -> list[dict[str, Any]]:
    _check_full_urls(entries)
    _authorize_entries(ctx, req, entries)
    for e in entries:
        if e.method in ("POST", "PUT") and e.resource is not None:
            check_resource_at(e)
    results: dict[int, FhirResponse] = {}
    with ctx.writing() as tx:  # the caller's transaction when it has one (the HL7 gateway)
        tctx = ctx.within(tx)
        mapping = _assign_ids(tctx, tx, entries)
        _check_identities(entries)
        for e in entries:
            if e.resource is not None and not _is_binary_patch(e):
                e.resource = _rewrite(tctx, tx, e, e.resource, mapping)
        for e in sorted(entries, key=lambda x: (_ORDER[x.method], x.index)):
            try:
                results[e.index] = _run_transaction_entry(tctx, req, tx, e)
            except FhirError as err:
                msg = "; ".join(i.diagnostics for i in err.issues)
                raise FhirError(
                    err.status,
                    [Issue("error", err.issues[0].code if err.issues else "processing",
                           f"Bundle.entry[{e.index}] ({e.method} {e.url}): {msg}",
                           (f"Bundle.entry[{e.index}]",))],
                ) from err
            if e.method in ("GET", "HEAD") and results[e.index].status >= 400:
                raise _fail(e.index, f"GET {e.url} failed", status=results[e.index].status)
    return [_response_entry(req, results[e.index]) for e in entries]


def _is_binary_patch(e: _Entry) -> bool:
    """A PATCH entry whose patch is a document in a Binary: its references are not rewritten
    (a Parameters resource of a FHIRPath Patch is, like any resource)."""
    return e.method == "PATCH" and (e.resource or {}).get("resourceType") == "Binary"


def _check_full_urls(entries: list[_Entry]) -> None:
    """bdl-7: a fullUrl names one resource in the Bundle
    (https://hl7.org/fhir/R4/bundle.html#bundle-unique)."""
    seen: set[str] = set()
    for e in entries:
        if e.full_url and e.resource is not None:
            if e.full_url in seen:
                raise _fail(e.index, f"fullUrl '{e.full_url}' appears twice in one transaction")
            seen.add(e.full_url)


def _check_identities(entries: list[_Entry]) -> None:
    """400 when two entries write one resource, identities resolved from conditional URLs and
    ifNoneExist included (https://hl7.org/fhir/R4/http.html#trules)."""
    seen: set[str] = set()
    for e in entries:
        if e.method == "POST" and e.existing_id:
            target = f"{e.path.split('/')[0]}/{e.existing_id}"
        elif e.method in ("PUT", "DELETE", "PATCH") and not e.query:
            target = e.path
        else:
            continue
        if target in seen:
            raise _fail(e.index, f"{target} is the target of two entries of one transaction")
        seen.add(target)


def check_resource_at(e: _Entry) -> None:
    """Validate an entry's resource; issue paths start at the entry."""
    assert e.resource is not None
    try:
        check_resource(e.resource, e.path.split("/")[0] if e.path else None)
    except FhirError as err:
        prefix = f"Bundle.entry[{e.index}].resource"
        rtype = str(e.resource.get("resourceType"))

        def at(expr: str) -> str:
            return prefix + expr[len(rtype):] if expr.startswith(rtype) else f"{prefix}.{expr}"

        raise FhirError(
            err.status,
            [Issue(i.severity, i.code, f"{prefix}: {i.diagnostics}",
                   tuple(at(x) for x in i.expression)) for i in err.issues],
        ) from err


def _assign_ids(ctx: Context, tx: StoreTx, entries: list[_Entry]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry that creates or updates a resource."""
    mapping: dict[str, str] = {}
    for e in entries:
        res_type = e.path.split("/")[0]
        if e.method == "POST":
            cond = create_criteria(e.query, e.headers.get("if-none-exist"))
            if cond:
                ids = matching_ids(ctx, tx, res_type, cond)
                if len(ids) > 1:
                    raise _fail(e.index, f"the conditional create criteria '{cond}' match "
                                         f"{len(ids)} resources",
                                status=412, code="multiple-matches")
                if ids:
                    e.existing_id = ids[0]
            e.assigned_id = e.existing_id or new_id()
            ref = f"{res_type}/{e.assigned_id}"
        elif e.method == "PUT" and e.query:
            ids = matching_ids(ctx, tx, res_type, _query_string(e))
            if len(ids) > 1:
                raise _fail(e.index, f"{e.url} matches {len(ids)} resources",
                            status=412, code="multiple-matches")
            body_id = (e.resource or {}).get("id")
            if ids and body_id is not None and body_id != ids[0]:
                raise _fail(e.index, f"the resource id '{body_id}' differs from the id "
                                     f"'{ids[0]}' of the resource matching {e.url}")
            rid = ids[0] if ids else str(body_id or new_id())
            if not ids and body_id is not None and valid_id(rid):
                try:
                    check_no_match_target(tx, res_type, rid, _query_string(e))
                except FhirError as err:
                    raise _fail(e.index, err.issues[0].diagnostics, 409, "conflict") from err
            e.path, e.query = f"{res_type}/{rid}", []
            if e.resource is not None:
                e.resource = {**e.resource, "id": rid}
            ref = e.path
        elif e.method == "PUT":
            ref = e.path
        elif e.method in ("DELETE", "PATCH") and e.query:
            # resolved now so that two entries on one resource are caught; no match is left
            # to the interaction (DELETE: nothing to do; PATCH: 404)
            ids = matching_ids(ctx, tx, res_type, _query_string(e))
            if len(ids) > 1:
                raise _fail(e.index, f"{e.url} matches {len(ids)} resources",
                            status=412, code="multiple-matches")
            if ids:
                e.path, e.query = f"{res_type}/{ids[0]}", []
            continue
        else:
            continue
        if e.full_url:
            mapping[e.full_url] = ref
    return mapping


def _query_string(e: _Entry) -> str:
    return urlencode(e.query)


def _rewrite(ctx: Context, tx: StoreTx, e: _Entry, value: Any, mapping: dict[str, str]) -> Any:
    """References to urn:uuid fullUrls and conditional references become Type/id."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                out[k] = _resolve(ctx, tx, e, v, mapping)
            else:
                out[k] = _rewrite(ctx, tx, e, v, mapping)
        return out
    if isinstance(value, list):
        return [_rewrite(ctx, tx, e, v, mapping) for v in value]
    return value


def _resolve(ctx: Context, tx: StoreTx, e: _Entry, ref: str, mapping: dict[str, str]) -> str:
    if ref in mapping:
        return mapping[ref]
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        return ref  # not in this Bundle: left as the client wrote it
    if "?" in ref and "/" not in ref.split("?")[0]:
        res_type = ref.split("?")[0]
        ids = matching_ids(ctx, tx, res_type, ref)
        if len(ids) != 1:
            raise _fail(e.index, f"conditional reference '{ref}' matches {len(ids)} resources",
                        status=412, code="multiple-matches" if ids else "not-found")
        return f"{res_type}/{ids[0]}"
    return ref


def _run_transaction_entry(
    ctx: Context, req: FhirRequest, tx: StoreTx, e: _Entry
) -> FhirResponse:
    if e.method == "POST":
        res_type = e.path.split("/")[0]
        r = route("POST", e.path)
        if r.interaction != "create" or e.resource is None:
            raise _fail(e.index, f"POST {e.url} is not a create")
        assert e.assigned_id
        ctx = ctx.serving(_sub_request(req, e, b""))
        if e.existing_id:
            existing = tx.read(res_type, e.existing_id)
            assert existing is not None
            return written(_sub_request(req, e, b""), existing, 200, "Matched existing resource")
        stored = store_resource(ctx, tx, e.resource, e.assigned_id, None, "POST")
        return written(_sub_request(req, e, b""), stored, 201, f"Created {res_type}")
    return _dispatch(ctx, req, e)


# -- batch ---------------------------------------------------------------------------------


def _batch(ctx: Context, req: FhirRequest, raw_entries: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, raw in enumerate(raw_entries):
        try:
            e = _parse_entry(req, i, raw)
            resp = _dispatch(ctx, req, e)
        except FhirError as err:
            resp = FhirResponse(err.status, resource=err.outcome())
        except Exception:  # one entry's failure must not lose the others' answers
            log.exception("batch entry %d failed", i)
            resp = FhirResponse(500, resource=operation_outcome([Issue(
                "fatal", "exception",
                f"Bundle.entry[{i}]: internal server error; this entry wrote nothing",
                (f"Bundle.entry[{i}]",))]))
        out.append(_response_entry(req, resp))
    return out
