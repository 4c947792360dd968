"""AuditEvent resources (https://hl7.org/fhir/R4/auditevent.html) shaped after IHE BALP
(https://profiles.ihe.net/ITI/BALP/content.html): one per FHIR interaction (type `rest`,
subtype the interaction) and one per security event of the authorization server (type DICOM
110114 User Authentication). Pure functions: request and response (or SecurityEvent) in,
resource dict out. Never a token, secret or password: only what the request names (ids, the
search's query) and who asked."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_server.errors import FhirError
from fhir_server.principal import Principal, SecurityEvent
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import Route, route
from fhir_server.timeutil import now_us, to_instant
from resources import json_numbers

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
NETWORK_IP = "2"  # AuditEvent.agent.network.type: IP address
OWN_BASE = "https://telefhir.org/fhir"  # operations.registry.CANONICAL_BASE
CLIENT_ID_SYSTEM = f"{OWN_BASE}/sid/client-id"
"""Identifier system of a SMART app's client id (agent.who.identifier)."""
SECURITY_ACTION_SYSTEM = f"{OWN_BASE}/CodeSystem/security-event"
"""The authorization server's own action codes (token, refresh, revoke, ...) as subtype."""
OBSERVER = "telefhir"

REST_TYPE = {"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"}
AUTH_TYPE = {"system": DCM, "code": "110114", "display": "User Authentication"}

_SUBTYPE = {
    "conditional-update": "update", "conditional-patch": "patch",
    "conditional-delete": "delete", "search-compartment": "search",
}
_ACTION = {
    "create": "C", "read": "R", "vread": "R", "history-instance": "R", "update": "U",
    "conditional-update": "U", "patch": "U", "conditional-patch": "U", "delete": "D",
    "conditional-delete": "D",
}  # everything else (searches, history of many, operations, Bundles): E (BALP Query, execute)
_DCM_AUTH = {"login": ("110122", "Login"), "logout": ("110123", "Logout")}
PATIENT_FIELDS = ("patient", "subject", "beneficiary")
"""Top-level references that name the patient a resource is about (BALP: the patient is an
entity of every event about patient data, where it is known)."""


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (refused, not found, bad input), 8 serious
    failure (the server's own fault) (https://hl7.org/fhir/R4/valueset-audit-event-outcome.html)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _diagnostics(resp: FhirResponse) -> str | None:
    res = resp.resource
    if resp.status < 400 or not isinstance(res, dict) or res.get("resourceType") != \
            "OperationOutcome":
        return None
    text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in res.get("issue", []))
    return text[:1000] or None


def agent(p: Principal | None, client_id: str | None, username: str | None,
          address: str | None) -> dict[str, Any]:
    """The requestor (BALP: the client app as who.identifier, the user as who.reference to the
    fhirUser and as name; the network address the request came from)."""
    client_id = client_id or (p.client_id if p else None)
    username = username or (p.username if p else None)
    who: dict[str, Any] = {}
    if p is not None and p.fhir_user:
        who["reference"] = p.fhir_user
    if client_id:
        who["identifier"] = {"system": CLIENT_ID_SYSTEM, "value": client_id}
    who["display"] = username or client_id or (p.kind if p else "unauthenticated")
    out: dict[str, Any] = {
        "type": {"coding": [{"system": SECURITY_ROLE, "code": "humanuser", "display":
                             "human user"} if username else
                            {"system": DCM, "code": "110150", "display": "Application"}]},
        "who": who, "requestor": True}
    if username:
        out["name"] = username
    if p is not None and p.token_id:
        out["altId"] = p.token_id  # the access token's jti (never the token)
    if address:
        out["network"] = {"address": address, "type": NETWORK_IP}
    return out


def source(site: str) -> dict[str, Any]:
    """The observer: this server (an application server, security-source-type 4)."""
    return {"site": site, "observer": {"display": OBSERVER},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]}


def _entity(reference: str, role: tuple[str, str], kind: tuple[str, str]) -> dict[str, Any]:
    return {"what": {"reference": reference},
            "type": {"system": ENTITY_TYPE, "code": kind[0], "display": kind[1]},
            "role": {"system": OBJECT_ROLE, "code": role[0], "display": role[1]}}


def _data(reference: str) -> dict[str, Any]:
    return _entity(reference, ("4", "Domain Resource"), ("2", "System Object"))


def _patient(pid: str) -> dict[str, Any]:
    return _entity(f"Patient/{pid}", ("1", "Patient"), ("1", "Person"))


def _query(req: FhirRequest, query: list[tuple[str, str]]) -> dict[str, Any]:
    text = req.path + ("?" + urlencode(query) if query else "")
    return {"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": base64.b64encode(text.encode()).decode()}


def _patient_of_ref(value: Any) -> str | None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref[8:].split("/")[0] or None
    return None


def patients_in(resource: dict[str, Any]) -> list[str]:
    """The patients a resource is about: itself if a Patient, else its `patient`, `subject` or
    `beneficiary` reference to a Patient."""
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return [resource["id"]]
    out = []
    for name in PATIENT_FIELDS:
        pid = _patient_of_ref(resource.get(name))
        if pid:
            out.append(pid)
    return out


def _patients_of_query(res_type: str | None, query: list[tuple[str, str]]) -> list[str]:
    out = []
    for k, v in query:
        name = k.split(":")[0]
        if name in ("patient", "subject", "beneficiary") or (
                res_type == "Patient" and name == "_id"):
            for one in v.split(","):
                one = one.removeprefix("Patient/")
                if one and "/" not in one and "?" not in one:
                    out.append(one)
    return out


def _body(resp: FhirResponse) -> dict[str, Any] | None:
    if resp.resource is not None:
        return resp.resource
    if resp.raw is not None and "json" in (resp.headers.get("Content-Type") or "json"):
        try:
            value = json_numbers.loads(resp.raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _written(resp: FhirResponse) -> str | None:
    """Type/id/_history/n of the version a create, update or patch wrote (its Location)."""
    loc = resp.headers.get("Location") or resp.headers.get("Content-Location")
    if not loc or resp.status >= 300:
        return None
    parts = loc.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        return "/".join(parts[-4:])
    return None


def _query_params(req: FhirRequest) -> list[tuple[str, str]]:
    """The search parameters, from the URL and (POST _search) the form body."""
    query = list(req.query)
    if req.method == "POST" and req.path.rstrip("/").endswith("_search") and req.body:
        try:
            query += parse_qsl(req.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            pass
    return query


def _bundle_type(req: FhirRequest, body: dict[str, Any] | None) -> str:
    if body is not None and str(body.get("type", "")).endswith("-response"):
        return str(body["type"])[: -len("-response")]
    try:
        sent = json_numbers.loads(req.body)
    except orjson.JSONDecodeError:
        return "transaction"
    kind = sent.get("type") if isinstance(sent, dict) else None
    return kind if kind in ("transaction", "batch") else "transaction"


def rest_event(req: FhirRequest, resp: FhirResponse, site: str) -> dict[str, Any]:
    """The AuditEvent of one FHIR interaction and its answer (BALP Read, Query, Create, Update,
    Delete: https://profiles.ihe.net/ITI/BALP/content.html#3574-basic-restful-interactions)."""
    try:
        r: Route | None = route(req.method, req.path)
    except FhirError:
        r = None
    interaction = r.interaction if r else "unknown"
    p = req.principal
    entities: list[dict[str, Any]] = []
    patients: list[str] = []
    subtype: list[dict[str, Any]] = []
    body = _body(resp) if resp.status < 300 or r is None else None
    if r is None:
        subtype.append({"system": INTERACTION, "code": "operation"
                        if "$" in req.path else "read"})
        entities.append(_query(req, list(req.query)))
    elif interaction == "operation":
        subtype += [{"system": INTERACTION, "code": "operation"},
                    {"system": f"{OWN_BASE}/CodeSystem/operation", "code": f"${r.operation}"}]
        if r.res_type and r.res_id:
            entities.append(_data(f"{r.res_type}/{r.res_id}"))
            if r.res_type == "Patient":
                patients.append(r.res_id)
        if req.query:
            entities.append(_query(req, list(req.query)))
    elif interaction == "bundle":
        subtype.append({"system": INTERACTION, "code": _bundle_type(req, body)})
        for e in (body or {}).get("entry", []) if body else ():
            written = _written_of_entry(e)
            if written:
                entities.append(_data(written))
    else:
        subtype.append({"system": INTERACTION, "code": _SUBTYPE.get(interaction, interaction)})
        if interaction in ("read", "vread", "history-instance", "update", "patch", "delete"):
            assert r.res_type and r.res_id
            ref = f"{r.res_type}/{r.res_id}"
            if r.version:
                ref += f"/_history/{r.version}"
            entities.append(_data(_written(resp) or ref))
            if r.res_type == "Patient":
                patients.append(r.res_id)
        elif interaction in ("create", "conditional-update", "conditional-patch"):
            written = _written(resp)
            if written:
                entities.append(_data(written))
            if req.query:
                entities.append(_query(req, list(req.query)))
        else:  # searches, history of a type or the system, conditional delete
            query = _query_params(req)
            entities.append(_query(req, query))
            if r.compartment_type and r.res_type == "Patient" and r.res_id:
                patients.append(r.res_id)
            patients += _patients_of_query(r.res_type, query)
        if body is not None and body.get("resourceType") != "Bundle" and \
                interaction not in ("delete", "conditional-delete"):
            patients += patients_in(body)
    if p is not None and p.patient:
        patients.append(p.patient)
    entities += [_patient(pid) for pid in dict.fromkeys(patients)]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": REST_TYPE,
        "subtype": subtype,
        "action": _ACTION.get(interaction, "E" if r is not None else "R"),
        "recorded": to_instant(now_us()),
        "outcome": outcome_code(resp.status),
    }
    desc = _diagnostics(resp)
    if desc is not None:
        event["outcomeDesc"] = f"HTTP {resp.status}: {desc}"
    elif resp.status >= 400:
        event["outcomeDesc"] = f"HTTP {resp.status}"
    event["agent"] = [agent(p, None, None, req.remote_addr)]
    event["source"] = source(site)
    if entities:
        event["entity"] = entities
    return event


def _written_of_entry(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    response = entry.get("response") or {}
    loc = response.get("location") if isinstance(response, dict) else None
    if isinstance(loc, str) and str(response.get("status", "")).startswith("2"):
        parts = loc.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            return "/".join(parts[-4:])
        if len(parts) >= 2:
            return "/".join(parts[-2:])
    return None


def security_audit_event(event: SecurityEvent, site: str) -> dict[str, Any]:
    """The AuditEvent of a sign-in, token, refresh, revocation, introspection, launch, lockout or
    refusal of the authorization server (DICOM 110114 User Authentication; login and logout
    as DICOM 110122/110123, every action also under our own code system)."""
    subtype = [{"system": SECURITY_ACTION_SYSTEM, "code": event.action}]
    if event.action in _DCM_AUTH:
        code, display = _DCM_AUTH[event.action]
        subtype.insert(0, {"system": DCM, "code": code, "display": display})
    out: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": AUTH_TYPE,
        "subtype": subtype,
        "action": "E",
        "recorded": to_instant(now_us()),
        "outcome": "0" if event.outcome == "success" else "4",
    }
    if event.outcome != "success":
        reason = event.detail.get("reason") or event.detail.get("error")
        out["outcomeDesc"] = f"{event.action} failed" + (f": {reason}" if reason else "")
    out["agent"] = [agent(event.principal, event.client_id, event.username, event.remote_addr)]
    out["source"] = source(site)
    entities: list[dict[str, Any]] = []
    detail = [{"type": str(k), "valueString": str(v)} for k, v in sorted(event.detail.items())
              if k != "patient"]
    if detail:
        entities.append({"type": {"system": ENTITY_TYPE, "code": "2", "display":
                                  "System Object"},
                         "role": {"system": OBJECT_ROLE, "code": "13", "display":
                                  "Security Resource"},
                         "description": event.action, "detail": detail})
    patient = event.detail.get("patient")
    if isinstance(patient, str) and patient:
        entities.append(_patient(patient))
    if entities:
        out["entity"] = entities
    return out
