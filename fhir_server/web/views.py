"""The Flask view layer: HTTP in and out of the dispatcher, nothing else
(FHIR logic lives below, in fhir_server.dispatcher)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.sansio.utils import get_current_url

from fhir_server.dispatcher import Dispatcher, render
from fhir_server.request import FhirRequest

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_BODYLESS = ("GET", "HEAD", "DELETE")


class FhirHttpResponse(Response):
    """A Response for the rendered FHIR JSON that hands the WSGI server one bytes object.

    For 200/201 answers with ASCII headers (ours are: ids are ASCII and the base URL comes from
    the Host header) werkzeug's header rewriting (IRI-to-URI of Content-Location) is a no-op,
    and returning a list lets granian send the body in one call instead of iterating it.
    No default media type: a bodiless answer (204, `Prefer: return=minimal`) has no
    Content-Type, not werkzeug's text/html."""

    default_mimetype = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.status_code not in (200, 201) or environ["REQUEST_METHOD"] == "HEAD":
            return super().__call__(environ, start_response)
        headers = self.headers.to_wsgi_list()
        if not all(v.isascii() for _, v in headers):
            return super().__call__(environ, start_response)
        start_response(self.status, headers)
        body = self.get_data()
        self.close()
        return [body]


@lru_cache(maxsize=64)
def _host_base(scheme: str, host: str, base_path: str) -> str:
    """The absolute FHIR base for one scheme and Host header, as werkzeug's `host_url` builds
    it (cached: building it is costly per request)."""
    return get_current_url(scheme, host).rstrip("/") + base_path


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """Request headers with lower-case names, straight from the WSGI environ."""
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].lower().replace("_", "-")] = value
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        out["content-length"] = environ["CONTENT_LENGTH"]
    return out


def fhir_blueprint(base_path: str, public_base_url: str | None) -> Blueprint:
    """All FHIR REST routes under `base_path`."""
    bp = Blueprint("fhir", __name__, url_prefix=base_path)

    @bp.route("", methods=METHODS, defaults={"path": ""}, strict_slashes=False)
    @bp.route("/<path:path>", methods=METHODS)
    def fhir(path: str) -> Response:
        dispatcher: Dispatcher = current_app.extensions["telefhir.dispatcher"]
        http = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        environ = http.environ
        base = public_base_url or _host_base(http.scheme, http.host, base_path)
        method = http.method
        if method in _BODYLESS and not http.content_length and \
                "HTTP_TRANSFER_ENCODING" not in environ:
            body = b""  # reading an empty body from the server still costs a round trip
        else:
            body = http.get_data(cache=False)
        req = FhirRequest(
            method=method,
            path=path,
            query=list(http.args.items(multi=True)) if environ.get("QUERY_STRING") else [],
            headers=_headers(environ),
            body=body,
            base_url=base,
            remote_addr=http.remote_addr,
        )
        resp = dispatcher.handle(req)
        return FhirHttpResponse(render(req, resp), status=resp.status, headers=resp.headers)

    return bp
