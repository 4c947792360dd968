"""The authorization server's HTTP side: discovery, JWKS, the authorize flow (sign-in, patient
picker, consent), the token, introspection and revocation endpoints, and the EHR launcher
(https://hl7.org/fhir/smart-app-launch/app-launch.html). Pages are server-rendered Jinja
templates with plain HTML forms, so browsers, scripts and conformance suites can drive them.

Every form carries a CSRF token bound to the session; the session cookie is HttpOnly,
SameSite=Lax and Secure when the public base URL is https."""

from __future__ import annotations

import hmac
import time
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, redirect, render_template, request, session
from werkzeug.wrappers import Response as BaseResponse

from fhir_server.context import Context
from resources import json_numbers
from smart_apps import discovery
from smart_apps.oauth import (
    Approval,
    SmartServer,
    StoredRequest,
    fhir_base,
    record_assertion,
    server_url,
)
from smart_apps.passwords import verify_password
from smart_apps.people import encounters_of, patient_exists, patient_label, patients
from smart_apps.records import LaunchRecord, UserRecord, new_secret, now_us
from smart_apps.scopes import describe, parse_scope, split_scope

LAUNCH_SECONDS = 3600  # an EHR launch context can be used for an hour
_PENDING_MAX = 5


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> BaseResponse:
    return Response(json_numbers.dumps(data), status=status, content_type="application/json",
                    headers=headers or {})


def _csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = new_secret(24)
    return str(token)


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(str(sent), str(expected))


def auth_blueprint(ctx: Context, server: SmartServer) -> Blueprint:
    """Blueprint of the discovery documents (under the FHIR base), `/auth/...` and
    `/launcher`."""
    cfg = ctx.config
    records = server.records
    bp = Blueprint("smart", __name__, template_folder="templates")

    def auth_base() -> str:
        return server_url(server, "")

    def page(template: str, status: int = 200, **values: Any) -> BaseResponse:
        values.setdefault("csrf_token", _csrf_token())
        values.setdefault("signed_in", session.get("user"))
        html = render_template(template, **values)
        return Response(html, status=status, content_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store",
                                 "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "frame-ancestors 'none'"})

    def message(title: str, text: str, status: int = 400) -> BaseResponse:
        return page("message.html", status, title=title, text=text)

    def current_user() -> UserRecord | None:
        name = session.get("user")
        if not name:
            return None
        user = records.user(str(name))
        if user is None:
            session.pop("user", None)
        return user

    # -- discovery --------------------------------------------------------------------------

    @bp.get(f"{cfg.base_path}/.well-known/smart-configuration")
    def smart_configuration() -> BaseResponse:
        return _json(discovery.smart_configuration(fhir_base(server), auth_base()),
                     headers={"Cache-Control": "public, max-age=300"})

    @bp.get(f"{cfg.base_path}/.well-known/openid-configuration")
    def openid_configuration() -> BaseResponse:
        return _json(discovery.openid_configuration(fhir_base(server), auth_base()))

    @bp.get("/auth/jwks.json")
    def jwks() -> BaseResponse:
        return _json(server.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})

    @bp.get("/auth/smart-style.json")
    def smart_style() -> BaseResponse:
        return _json(discovery.SMART_STYLE)

    # -- token endpoints --------------------------------------------------------------------

    def limited() -> BaseResponse | None:
        """429 when this address failed too often in the last minute."""
        addr = request.remote_addr or "?"
        if records.failures_since(addr, now_us() - 60_000_000) >= cfg.auth_failure_rate:
            server.event("rate-limit", "failure", address=addr, path=request.path)
            return _json({"error": "invalid_request",
                          "error_description": "Too many failed requests from this address; "
                                               "retry in a minute"}, 429,
                         headers={"Retry-After": "60", "Cache-Control": "no-store"})
        return None

    def counted(resp: BaseResponse) -> BaseResponse:
        if not record_assertion(server) and resp.status_code == 200:
            resp = _json({"error": "invalid_client",
                          "error_description": "The client assertion was used before"}, 400)
        if resp.status_code in (400, 401):
            records.record_failure(request.remote_addr or "?")
            body = resp.get_json(silent=True) or {}
            server.event("token", "failure", client_id=request.form.get("client_id"),
                         error=body.get("error"), grant_type=request.form.get("grant_type"))
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Pragma"] = "no-cache"
        return resp

    @bp.post("/auth/token")
    def token() -> BaseResponse:
        return limited() or counted(server.create_token_response())

    @bp.post("/auth/introspect")
    def introspect() -> BaseResponse:
        return limited() or counted(server.create_endpoint_response("introspection"))

    @bp.post("/auth/revoke")
    def revoke() -> BaseResponse:
        return limited() or counted(server.create_endpoint_response("revocation"))

    # -- authorize: validate, then sign-in, patient, consent ---------------------------------

    def pending() -> dict[str, Any]:
        value = session.get("pending")
        return dict(value) if isinstance(value, dict) else {}

    def save_pending(values: dict[str, Any]) -> None:
        items = list(values.items())[-_PENDING_MAX:]
        session["pending"] = dict(items)

    def fail(redirect_uri: str | None, state: str | None, error: str, text: str) -> BaseResponse:
        if redirect_uri:
            params = [("error", error), ("error_description", text)]
            if state:
                params.append(("state", state))
            return redirect(add_params_to_uri(redirect_uri, params), 302)
        return message("Cannot authorize the app", text)

    def validate(params: dict[str, str]) -> tuple[Any, StoredRequest]:
        req = StoredRequest(server_url(server, "/auth/authorize"), params)
        return server.get_consent_grant(request=req, end_user=None), req

    @bp.route("/auth/authorize", methods=["GET", "POST"])
    def authorize() -> BaseResponse:
        """The authorization request, GET or POST (capability authorize-post)."""
        source = request.form if request.method == "POST" else request.args
        params = {k: source.get(k, "") for k in source}
        try:
            grant, _req = validate(params)
        except OAuth2Error as err:
            return fail(err.redirect_uri, params.get("state"), err.error,
                        err.description or err.error)
        redirect_uri = params["redirect_uri"]
        state = params.get("state")
        if not state:  # SMART requires it of apps (CSRF protection of their redirect URI)
            return fail(redirect_uri, None, "invalid_request", "state is required")
        aud = params.get("aud", "").rstrip("/")
        if aud != fhir_base(server):
            return fail(redirect_uri, state, "invalid_request",
                        f"aud must be this FHIR server's base URL {fhir_base(server)}")
        entry: dict[str, Any] = {"params": params}
        if params.get("launch"):
            launch = records.launch(params["launch"])
            if launch is None or launch.client_id != grant.request.client.client_id:
                return fail(redirect_uri, state, "invalid_request",
                            "Unknown or expired launch for this app")
            entry.update(launch_user=launch.username, patient=launch.patient,
                         encounter=launch.encounter, launched=True)
        elif "launch" in split_scope(params.get("scope")):
            return fail(redirect_uri, state, "invalid_request",
                        "Scope 'launch' needs the 'launch' parameter of an EHR launch")
        txn = new_secret(12)
        save_pending({**pending(), txn: entry})
        return redirect(f"/auth/authorize/continue?txn={txn}", 302)

    def next_step(txn: str) -> BaseResponse:
        entry = pending().get(txn)
        if entry is None:
            return message("Sign-in expired", "This authorization request is no longer "
                           "pending. Start again from the app.")
        params: dict[str, str] = entry["params"]
        user = current_user()
        if user is None:
            return page("login.html", txn=txn, next_url="", error=None)
        if entry.get("launch_user") and entry["launch_user"] != user.username:
            return message("Wrong user", f"This launch was made for another user than "
                           f"{user.username}. Sign out and sign in as that user.", 403)
        requested = split_scope(params.get("scope"))
        if entry.get("patient") is None and user.fhir_user.startswith("Patient/"):
            entry["patient"] = user.fhir_user.split("/", 1)[1]
            save_pending({**pending(), txn: entry})
        if entry.get("patient") is None and "launch/patient" in requested:
            found = patients(ctx, request.args.get("q"))
            return page("picker.html", txn=txn, patients=found, q=request.args.get("q", ""),
                        app=_app_name(params))
        granted = _granted(server, params, entry)
        return page("consent.html", txn=txn, app=_app_name(params),
                    scopes=[(s, describe(s)) for s in granted], user=user,
                    patient=patient_label(ctx, entry.get("patient")),
                    encounter=entry.get("encounter"))

    def _app_name(params: dict[str, str]) -> str:
        rec = records.client(params.get("client_id", ""))
        return rec.name if rec else params.get("client_id", "")

    @bp.get("/auth/authorize/continue")
    def authorize_continue() -> BaseResponse:
        return next_step(request.args.get("txn", ""))

    @bp.post("/auth/login")
    def login() -> BaseResponse:
        txn = request.form.get("txn", "")
        next_url = request.form.get("next", "")
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = ""
        if not _csrf_ok():
            return message("Form expired", "The sign-in form expired; reload the page.", 400)
        addr = request.remote_addr or "?"
        if records.failures_since(addr, now_us() - 60_000_000) >= cfg.auth_failure_rate:
            server.event("rate-limit", "failure", address=addr, path=request.path)
            return page("login.html", 429, txn=txn, next_url=next_url,
                        error="Too many failed sign-ins from this address; wait a minute.")
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        user = records.user(username) if username else None
        if user is not None and user.locked_until_us > now_us():
            server.event("login", "failure", username=username, reason="locked")
            return page("login.html", 403, txn=txn, next_url=next_url,
                        error="This account is locked after too many failed sign-ins; "
                              "try again later.")
        if not verify_password(user.password_hash if user else None, password):
            records.record_failure(addr)
            server.event("login", "failure", username=username or None)
            if user is not None and records.record_login(
                    username, False, cfg.auth_max_failures, cfg.auth_lockout_seconds * 10**6):
                server.event("lockout", "success", username=username,
                             seconds=cfg.auth_lockout_seconds)
            return page("login.html", 401, txn=txn, next_url=next_url,
                        error="Unknown username or wrong password.")
        assert user is not None
        records.record_login(username, True, cfg.auth_max_failures, 0)
        kept = session.get("pending")
        session.clear()  # a new session on sign-in (no fixation)
        if kept:
            session["pending"] = kept
        session["user"] = user.username
        session["signed_in_at"] = int(time.time())
        server.event("login", "success", username=user.username)
        if txn:
            return redirect(f"/auth/authorize/continue?txn={txn}", 302)
        return redirect(next_url or "/launcher", 302)

    @bp.post("/auth/logout")
    def logout() -> BaseResponse:
        if not _csrf_ok():
            return message("Form expired", "Reload the page and try again.", 400)
        name = session.get("user")
        session.clear()
        if name:
            server.event("logout", "success", username=str(name))
        return page("message.html", title="Signed out", text="You are signed out.")

    @bp.post("/auth/patient")
    def choose_patient() -> BaseResponse:
        txn = request.form.get("txn", "")
        if not _csrf_ok():
            return message("Form expired", "Reload the page and try again.", 400)
        entries = pending()
        entry = entries.get(txn)
        user = current_user()
        if entry is None or user is None:
            return next_step(txn)
        chosen = request.form.get("patient", "").strip()
        if not patient_exists(ctx, chosen) or not _may_open(user, chosen) or \
                entry.get("launched"):
            return message("Unknown patient", f"There is no Patient '{chosen}' you can "
                           "choose here.", 400)
        entry["patient"] = chosen
        save_pending({**entries, txn: entry})
        return redirect(f"/auth/authorize/continue?txn={txn}", 302)

    @bp.post("/auth/consent")
    def consent() -> BaseResponse:
        txn = request.form.get("txn", "")
        if not _csrf_ok():
            return message("Form expired", "Reload the page and try again.", 400)
        entries = pending()
        entry = entries.pop(txn, None)
        user = current_user()
        if entry is None or user is None:
            return next_step(txn)
        save_pending(entries)
        params = entry["params"]
        decision = request.form.get("decision")
        try:
            grant, req = validate(params)
        except OAuth2Error as err:
            return fail(err.redirect_uri, params.get("state"), err.error,
                        err.description or err.error)
        if decision != "approve":
            server.event("authorize", "failure", client_id=params.get("client_id"),
                         username=user.username, reason="denied")
            resp = server.create_authorization_response(request=req, grant_user=None,
                                                        grant=grant)
            return resp
        approval = Approval(user=user, scope=" ".join(_granted(server, params, entry)),
                            patient=entry.get("patient"), encounter=entry.get("encounter"))
        server.event("authorize", "success", client_id=params.get("client_id"),
                     username=user.username, scope=approval.scope, patient=approval.patient)
        return server.create_authorization_response(
            request=req, grant_user=approval, grant=grant)

    # -- the EHR launcher ---------------------------------------------------------------------

    @bp.route("/launcher", methods=["GET", "POST"])
    def launcher() -> BaseResponse:
        """A signed-in clinician picks a patient, optionally an encounter, and an app; the app
        opens with `iss` and `launch` (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch)."""
        user = current_user()
        if user is None:
            return page("login.html", txn="", next_url="/launcher", error=None)
        apps = [c for c in records.clients() if c.launch_url and not c.backend]
        if request.method == "POST":
            if not _csrf_ok():
                return message("Form expired", "Reload the page and try again.", 400)
            client_id = request.form.get("client_id", "")
            patient = request.form.get("patient", "").strip()
            encounter = request.form.get("encounter", "").strip() or None
            app = next((c for c in apps if c.client_id == client_id), None)
            if app is None or app.launch_url is None:
                return message("Unknown app", "Choose a registered app with a launch URL.")
            if not patient_exists(ctx, patient) or not _may_open(user, patient):
                return message("Unknown patient", f"There is no Patient '{patient}' you can "
                               "open.")
            launch = new_secret(24)
            records.add_launch(launch, LaunchRecord(
                client_id, user.username, patient, encounter,
                now_us() + LAUNCH_SECONDS * 1_000_000))
            server.event("launch", "success", client_id=client_id, username=user.username,
                         patient=patient, encounter=encounter)
            target = add_params_to_uri(app.launch_url, [("iss", fhir_base(server)),
                                                        ("launch", launch)])
            return redirect(target, 302)
        chosen = request.args.get("patient") or None
        listed = patients(ctx, request.args.get("q"))
        listed = [(pid, label) for pid, label in listed if _may_open(user, pid)]
        return page("launcher.html", user=user, apps=apps, patients=listed,
                    q=request.args.get("q", ""), chosen=chosen,
                    encounters=encounters_of(ctx, chosen) if chosen else [])

    return bp


def _may_open(user: UserRecord, patient_id: str) -> bool:
    """A practitioner may open any patient's chart; a patient only their own."""
    if user.fhir_user.startswith("Patient/"):
        return user.fhir_user == f"Patient/{patient_id}"
    return True


def _granted(server: SmartServer, params: dict[str, str], entry: dict[str, Any]) -> list[str]:
    """The scopes to grant: what the app may have of what it asked, without patient scopes
    when no patient is in context and without launch/encounter when no encounter is."""
    client = server.find_client(params.get("client_id", ""))
    allowed = split_scope(client.get_allowed_scope(params.get("scope", ""))) if client else []
    out = []
    for s in allowed:
        parsed = parse_scope(s)
        if parsed is not None and parsed.context == "patient" and not entry.get("patient"):
            continue
        if s == "launch/encounter" and not entry.get("encounter"):
            continue
        out.append(s)
    return out


_CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Prefer, If-Match, "
     "If-None-Match, If-None-Exist, If-Modified-Since"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    ("Access-Control-Expose-Headers", "Location, Content-Location, ETag, Last-Modified, "
     "WWW-Authenticate"),
    ("Access-Control-Max-Age", "600"),
)
_PAGES = ("/auth/authorize", "/auth/login", "/auth/logout", "/auth/patient", "/auth/consent",
          "/launcher")


def cors(resp: BaseResponse) -> BaseResponse:
    """CORS for browser apps calling the FHIR API and the token endpoints from their own
    origin (bearer tokens, no cookies: any origin may call;
    https://hl7.org/fhir/R4/security.html#cors). Only requests that carry an Origin (what
    browsers send cross-origin) get the headers; the sign-in pages never do."""
    environ = request.environ
    if "HTTP_ORIGIN" not in environ or environ.get("PATH_INFO", "").startswith(_PAGES):
        return resp
    resp.headers.extend(_CORS_HEADERS)
    return resp


__all__ = ["auth_blueprint", "cors"]
