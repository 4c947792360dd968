"""The Flask view layer: HTTP in and out of the dispatcher, nothing else
(FHIR logic lives below, in fhir_server.dispatcher)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from fhir_server.dispatcher import Dispatcher, render
from fhir_server.request import FhirRequest

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def fhir_blueprint(base_path: str, public_base_url: str | None) -> Blueprint:
    """All FHIR REST routes under `base_path`."""
    bp = Blueprint("fhir", __name__, url_prefix=base_path)

    @bp.route("", methods=METHODS, defaults={"path": ""}, strict_slashes=False)
    @bp.route("/<path:path>", methods=METHODS)
    def fhir(path: str) -> Response:
        dispatcher: Dispatcher = current_app.extensions["telefhir.dispatcher"]
        base = public_base_url or (request.host_url.rstrip("/") + base_path)
        req = FhirRequest(
            method=request.method,
            path=path,
            query=list(request.args.items(multi=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.get_data(cache=False),
            base_url=base,
        )
        resp = dispatcher.handle(req)
        out = Response(render(req, resp), status=resp.status, headers=resp.headers)
        if "Content-Type" not in resp.headers:
            del out.headers["Content-Type"]
        return out

    return bp
