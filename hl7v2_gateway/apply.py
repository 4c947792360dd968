"""A Plan applied to the FHIR store: one transaction Bundle sent to the dispatcher, as the
gateway's own principal, inside the caller's database transaction.

Each planned resource is looked up by its identifier (a search through the dispatcher, under a
lock on that identifier). Found: the message's elements are merged into it (empty v2 fields
leave stored elements alone, `""` clears them, identifiers accumulate) and it is updated with
If-Match, unless nothing changed or a newer message already wrote it (the time of the message
that last wrote a resource is kept in `meta.extension`, MESSAGE_TIME: an out-of-order A08
never overwrites newer data). Not found: a conditional create (ifNoneExist on the identifier).
https://hl7.org/fhir/R4/http.html#trules, v2-to-FHIR IG "Conditional create/update"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fhir_server.app import build_dispatcher
from fhir_server.context import Context
from fhir_server.principal import internal
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.store.base import StoreTx
from fhir_server.timeutil import parse_instant_us, to_instant
from hl7v2_gateway.outbox import APPLYING_V2
from hl7v2_gateway.plan import Plan
from operations.registry import CANONICAL_BASE
from resources import json_numbers

PRINCIPAL = internal("hl7v2-gateway")
MESSAGE_TIME = f"{CANONICAL_BASE}/StructureDefinition/hl7v2-message-time"
BASE_URL = "http://localhost/fhir"


class ApplyFailed(Exception):
    """The store refused the transaction (the OperationOutcome's diagnostics in the text)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status
        self.text = text


@dataclass
class Applied:
    """What a message wrote: "Type/id" of each planned resource, and how many were written."""

    refs: dict[str, str]
    written: int


def token(ident: dict[str, Any]) -> str:
    """A token search value system|value, with the search escapes (https://hl7.org/fhir/R4/
    search.html#escaping)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")

    return f"{esc(ident.get('system', ''))}|{esc(ident['value'])}"


class Applier:
    """Sends one plan's reads and its transaction to the dispatcher in `tx`."""

    def __init__(self, ctx: Context, tx: StoreTx) -> None:
        self.ctx = ctx.within(tx)
        self.tx = tx
        self.dispatcher = build_dispatcher(self.ctx)

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                body: dict[str, Any] | None = None) -> FhirResponse:
        headers = {"accept": "application/fhir+json"}
        raw = b""
        if body is not None:
            raw = json_numbers.dumps(body)
            headers["content-type"] = "application/fhir+json"
        return self.dispatcher.handle(FhirRequest(method, path, query or [], headers, raw,
                                                  BASE_URL, principal=PRINCIPAL))

    def search(self, res_type: str, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        resp = self.request("GET", res_type, [*query, ("_count", "1000")])
        body = _json(resp)
        if resp.status != 200:
            raise ApplyFailed(resp.status, _diagnostics(body))
        return [e["resource"] for e in body.get("entry", [])
                if e.get("search", {}).get("mode", "match") == "match"]

    def prefetch(self, plan: Plan) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The stored resource of each planned identifier: one search per resource type
        (identifiers OR-ed), under a lock per identifier taken in sorted order (so that two
        writers never wait for each other's locks in a cycle)."""
        wanted = sorted({(p.res_type, str(p.ident.get("system", "")), str(p.ident["value"]))
                         for p in plan.items.values() if p.ident is not None})
        for res_type, system, value in wanted:
            self.tx.lock(f"hl7v2:{res_type}|{system}|{value}")
        by_type: dict[str, list[tuple[str, str]]] = {}
        for res_type, system, value in wanted:
            by_type.setdefault(res_type, []).append((system, value))
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for res_type, idents in by_type.items():
            for i in range(0, len(idents), 50):
                chunk = idents[i:i + 50]
                tokens = ",".join(token({"system": s, "value": v}) for s, v in chunk)
                keys = set(chunk)
                for res in self.search(res_type, [("identifier", tokens)]):
                    for ident in res.get("identifier") or []:
                        k = (str(ident.get("system", "")), str(ident.get("value")))
                        if k not in keys:
                            continue
                        have = found.get((res_type, *k))
                        if have is not None and have["id"] != res["id"]:
                            raise ApplyFailed(412, f"identifier {k[0]}|{k[1]} matches several "
                                                   f"resources: {res_type}/{have['id']}, "
                                                   f"{res_type}/{res['id']}")
                        found[(res_type, *k)] = res
        return found

    def apply(self, plan: Plan) -> Applied:
        token_ = APPLYING_V2.set(True)
        try:
            return self._apply(plan)
        finally:
            APPLYING_V2.reset(token_)

    def _apply(self, plan: Plan) -> Applied:
        entries: list[dict[str, Any]] = []
        refs: dict[str, str] = {}
        stamp = to_instant(plan.message_time_us) if plan.message_time_us is not None else None
        found = self.prefetch(plan)
        for p in plan.items.values():
            existing = None
            if p.ident is not None:
                existing = found.get((p.res_type, str(p.ident.get("system", "")),
                                      str(p.ident["value"])))
            if existing is not None:
                refs[p.key] = f"{p.res_type}/{existing['id']}"
                if not p.update or _newer(existing, plan.message_time_us):
                    continue
                merged = merge(existing, p.body, p.clear, stamp)
                if _same(existing, merged):
                    continue
                version = existing.get("meta", {}).get("versionId")
                request: dict[str, Any] = {"method": "PUT", "url": refs[p.key]}
                if version:
                    request["ifMatch"] = f'W/"{version}"'
                entries.append({"fullUrl": f"{BASE_URL}/{refs[p.key]}", "resource": merged,
                                "request": request})
                continue
            full = f"urn:uuid:{uuid.uuid4()}"
            refs[p.key] = full
            body = merge({}, p.body, set(), stamp if p.update else None)
            request = {"method": "POST", "url": p.res_type}
            if p.ident is not None:
                request["ifNoneExist"] = urlencode([("identifier", token(p.ident))])
            entries.append({"fullUrl": full, "resource": body, "request": request})
        for rp in plan.repoints:
            entries += self._repoint(rp, refs, {e["fullUrl"] for e in entries})
        for e in entries:
            e["resource"] = resolve(e["resource"], refs)
        if not entries:
            return Applied(refs, 0)
        resp = self.request("POST", "", body={"resourceType": "Bundle", "type": "transaction",
                                              "entry": entries})
        out = _json(resp)
        if resp.status != 200:
            raise ApplyFailed(resp.status, _diagnostics(out))
        for key, ref in list(refs.items()):
            if ref.startswith("urn:uuid:"):
                for e, r in zip(entries, out.get("entry", []), strict=False):
                    if e["fullUrl"] == ref:
                        loc = r.get("response", {}).get("location", "")
                        refs[key] = "/".join(loc.split("/_history/")[0].split("/")[-2:])
        return Applied(refs, len(entries))

    def _repoint(self, rp: Any, refs: dict[str, str], planned: set[str]) -> list[dict[str, Any]]:
        source, target = refs.get(rp.source), refs.get(rp.target)
        if not source or not target or source.startswith("urn:"):
            return []
        out = []
        for res in self.search(rp.res_type, [(rp.param, source)]):
            url = f"{rp.res_type}/{res['id']}"
            if f"{BASE_URL}/{url}" in planned:
                continue
            ref = res.get(rp.element)
            if isinstance(ref, dict) and ref.get("reference") == source:
                changed = {**res, rp.element: {**ref, "reference": f"@{rp.target}"}}
                request = {"method": "PUT", "url": url}
                version = res.get("meta", {}).get("versionId")
                if version:
                    request["ifMatch"] = f'W/"{version}"'
                out.append({"fullUrl": f"{BASE_URL}/{url}", "resource": changed,
                            "request": request})
        return out


_ACCUMULATE: dict[str, Any] = {
    "identifier": lambda i: (i.get("system"), i.get("value")),
    "link": lambda link: (link.get("type"), (link.get("other") or {}).get("reference")),
}


def merge(existing: dict[str, Any], body: dict[str, Any], clear: set[str],
          stamp: str | None) -> dict[str, Any]:
    """`existing` with the message's elements: each replaces the stored one, identifiers are
    added to the stored ones, `clear` removes, and the message time is recorded."""
    out = dict(existing)
    for k, v in body.items():
        if k in _ACCUMULATE and isinstance(out.get(k), list):
            key_of = _ACCUMULATE[k]
            have = list(out[k])
            keys = {key_of(i) for i in have}
            for item in v:
                if key_of(item) not in keys:
                    have.append(item)
            out[k] = have
        else:
            out[k] = v
    for k in clear:
        out.pop(k, None)
    if stamp is not None:
        meta = {k: v for k, v in (out.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
        ext = [e for e in meta.get("extension", []) if e.get("url") != MESSAGE_TIME]
        ext.append({"url": MESSAGE_TIME, "valueInstant": stamp})
        meta["extension"] = ext
        out["meta"] = meta
    return out


def message_time(resource: dict[str, Any]) -> str | None:
    for e in (resource.get("meta") or {}).get("extension", []):
        if e.get("url") == MESSAGE_TIME:
            return str(e.get("valueInstant"))
    return None


def _newer(existing: dict[str, Any], time_us: int | None) -> bool:
    """Whether `existing` was written by a message later than `time_us`."""
    if time_us is None:
        return False
    have = message_time(existing)
    if not have:
        return False
    have_us = parse_instant_us(have)
    return have_us is not None and have_us[0] > time_us


def _same(existing: dict[str, Any], merged: dict[str, Any]) -> bool:
    """Equal but for the message time and server-stamped meta (nothing worth a version)."""

    def strip(r: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in r.items() if k != "meta"}
        meta = {k: v for k, v in (r.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated", "extension")}
        meta["extension"] = [e for e in (r.get("meta") or {}).get("extension", [])
                             if e.get("url") != MESSAGE_TIME]
        out["meta"] = meta
        return out

    return strip(existing) == strip(merged)


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """`@key` references replaced by the resource they resolved to."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v.startswith("@"):
                out[k] = refs.get(v[1:], v)
            else:
                out[k] = resolve(v, refs)
        return out
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def _json(resp: FhirResponse) -> dict[str, Any]:
    if resp.raw is not None:
        data: dict[str, Any] = json_numbers.loads(resp.raw)
        return data
    if resp.resource is None:
        return {}
    # entries are Fragments
    out: dict[str, Any] = json_numbers.loads(json_numbers.dumps(resp.resource))
    return out


def _diagnostics(body: dict[str, Any]) -> str:
    if body.get("resourceType") == "OperationOutcome":
        return "; ".join(i.get("diagnostics", i.get("code", "")) for i in body.get("issue", []))
    return json_numbers.dumps(body).decode()[:500]
