"""Helpers for the audit trail tests: an auditor (a backend service holding
`system/AuditEvent.rs`) and ways to find the AuditEvents of a request."""

from __future__ import annotations

import base64
from typing import Any

import requests

from tests.integration.smart_support import SmartServer, bearer
from tests.integration.test_smart_backend import BackendApp

REST = ("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest")
AUTH = ("http://dicom.nema.org/resources/ontology/DCM", "110114")


def auditor_token(srv: SmartServer, scope: str = "system/AuditEvent.rs") -> str:
    """An access token of a backend service (a SIEM collector) with `scope`."""
    app = BackendApp("RS384")
    app.client_id, _ = srv.register("Collector", method="private_key_jwt", jwks=app.jwks,
                                    backend=True, redirect_uris=(), scopes=scope)
    r = app.token(srv, scope)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def audit_events(srv: SmartServer, token: str, query: str = "") -> list[dict[str, Any]]:
    """Every AuditEvent matching `query`, oldest first, through the search API."""
    url: str | None = srv.url(f"AuditEvent?_count=1000&_sort=date{'&' + query if query else ''}")
    out: list[dict[str, Any]] = []
    while url:
        r = requests.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        bundle = r.json()
        out += [e["resource"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle.get("link", [])
                    if link["relation"] == "next"), None)
    return out


def code_of(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"]["system"], event["type"]["code"]


def subtypes(event: dict[str, Any]) -> set[str]:
    return {c["code"] for c in event.get("subtype", [])}


def entity_refs(event: dict[str, Any], role: str | None = None) -> list[str]:
    """entity.what.reference of `event` (of one object-role code if given)."""
    return [e["what"]["reference"] for e in event.get("entity", [])
            if "what" in e and (role is None or e["role"]["code"] == role)]


def queries(event: dict[str, Any]) -> list[str]:
    """The decoded entity.query of `event`."""
    return [base64.b64decode(e["query"]).decode() for e in event.get("entity", [])
            if "query" in e]


def requestor(event: dict[str, Any]) -> dict[str, Any]:
    agents = [a for a in event["agent"] if a.get("requestor")]
    assert len(agents) == 1, event["agent"]
    return agents[0]
