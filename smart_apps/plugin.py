"""The SMART plugin (fhir_server.config.DEFAULT_PLUGINS): `install(ctx)` registers the
enforcement hooks (smart_apps.enforce); `install_web(app, ctx)` the authorization server's
endpoints and pages (smart_apps.web) and CORS for browser apps."""

from __future__ import annotations

from flask import Flask

from fhir_server.context import Context
from smart_apps.enforce import Enforcer
from smart_apps.keys import SigningKeys
from smart_apps.oauth import build_server
from smart_apps.records import AuthRecords
from smart_apps.web import auth_blueprint, cors

_RECORDS = "smart_apps.records"


def records_of(ctx: Context) -> AuthRecords:
    """The context's AuthRecords (tables made on first use)."""
    rec = ctx.extensions.get(_RECORDS)
    if rec is None:
        rec = ctx.extensions[_RECORDS] = AuthRecords(ctx.store)
    return rec


def install(ctx: Context) -> None:
    """Register the enforcement hooks."""
    Enforcer(ctx, records_of(ctx)).install(ctx)


def install_web(app: Flask, ctx: Context) -> None:
    """Register the authorization server on `app`."""
    records = records_of(ctx)
    keys = SigningKeys(records, keep_retired_seconds=ctx.config.access_token_seconds + 300)
    app.secret_key = records.secret("session-signing")
    secure = (ctx.config.public_base_url or "").startswith("https://")
    app.config.update(
        SESSION_COOKIE_NAME="telefhir_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=8 * 3600,
    )
    server = build_server(ctx, records, keys, app)
    app.extensions["telefhir.smart"] = server
    app.register_blueprint(auth_blueprint(ctx, server))
    app.after_request(cors)
