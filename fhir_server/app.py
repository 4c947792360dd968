"""`create_app(config)`: the Flask application factory and the one composition root that
wires store, hooks, dispatcher and the CapabilityStatement builder together."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fhir_server.config import Config
from fhir_server.context import Context
from fhir_server.dispatcher import Dispatcher
from fhir_server.errors import Issue, operation_outcome
from fhir_server.formats import outcome_xml
from fhir_server.hooks import Hooks
from fhir_server.negotiation import FHIR_JSON, FHIR_XML, XML_TYPES, is_xml, preferred_type
from fhir_server.request import FhirRequest
from fhir_server.store.base import ResourceStore
from fhir_server.web.views import fhir_blueprint
from resources import json_numbers


def open_store(db_url: str) -> ResourceStore:
    """A store for `sqlite:///path` (relative; `sqlite:////abs/path` for absolute) or
    `postgresql://…`."""
    if db_url.startswith("sqlite://"):
        from fhir_server.store.sqlite import SqliteStore

        path = db_url[len("sqlite:///"):] if db_url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"SQLite URL needs a path: sqlite:///var/telefhir.db, not {db_url}")
        return SqliteStore(Path(path))
    if db_url.startswith(("postgresql://", "postgres://")):
        from fhir_server.store.postgres import PostgresStore

        return PostgresStore(db_url)
    raise ValueError(f"Unsupported --db URL '{db_url}': use sqlite:///FILE or postgresql://…")


def build_context(config: Config, store: ResourceStore) -> Context:
    """A server context with every plugin of `config.plugins` installed (hooks, operations).

    A plugin is a module with `install(ctx)`; one that serves web pages or endpoints of its own
    (outside the FHIR REST API, e.g. the SMART authorization server) also has
    `install_web(app, ctx)`, which `create_app` calls with the Flask app to register its
    blueprints."""
    ctx = Context(store=store, config=config, hooks=Hooks())
    for name in config.plugins:
        importlib.import_module(name).install(ctx)
    return ctx


def build_dispatcher(ctx: Context) -> Dispatcher:
    """The framework-free dispatcher for `ctx`: what the Flask view and internal clients (the
    HL7 v2 gateway, the claim engine) send their FhirRequests to."""
    from conformance.capability import capability_statement

    def capabilities(req: FhirRequest) -> dict[str, Any]:
        generated = capability_statement(req.base_url)  # cached: hooks change a copy
        statement = {**generated, "rest": [dict(r) for r in generated["rest"]]}
        ctx.hooks.run("capability_statement", ctx, req, statement)
        return statement

    return Dispatcher(ctx, capabilities)


def error_media(fmt: str | None, accept: str | None, content_type: str | None) -> str:
    """The format of an error raised before the dispatcher: as negotiated, else JSON."""
    sent_xml = (content_type or "").split(";")[0].strip().lower() in XML_TYPES
    return preferred_type(fmt, accept, FHIR_XML if sent_xml else FHIR_JSON) or FHIR_JSON


def create_app(config: Config | None = None, store: ResourceStore | None = None) -> Flask:
    """The WSGI application serving the FHIR API at `config.base_path`."""
    config = config or Config.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = store or open_store(config.db_url)
    ctx = build_context(config, store)

    app = Flask("telefhir")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["telefhir.context"] = ctx
    app.extensions["telefhir.dispatcher"] = build_dispatcher(ctx)
    app.register_blueprint(fhir_blueprint(config.base_path, config.public_base_url))
    for name in config.plugins:
        install_web = getattr(importlib.import_module(name), "install_web", None)
        if install_web is not None:
            install_web(app, ctx)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        """Errors raised before the dispatcher (unknown path, body too large) as
        OperationOutcomes too."""
        status = exc.code or 500
        code = {404: "not-found", 413: "too-long"}.get(status, "processing")
        outcome = operation_outcome([Issue("error", code, exc.description or exc.name)])
        media = error_media(request.args.get("_format"), request.headers.get("Accept"),
                            request.headers.get("Content-Type"))
        body = outcome_xml(outcome) if is_xml(media) else json_numbers.dumps(outcome)
        return Response(body, status=status, content_type=f"{media}; charset=utf-8")

    return app
