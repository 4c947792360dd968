"""Helpers for the SMART tests: an authorised live server, apps and users in its records, a
page driver that signs in, picks a patient and answers the consent page through the real
HTML forms (as a conformance suite's browser automation does), and PKCE pairs."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from fhir_server.dispatcher import Dispatcher
from fhir_server.principal import internal
from fhir_server.request import FhirRequest
from smart_apps.passwords import hash_password
from smart_apps.plugin import records_of
from smart_apps.records import (
    AuthRecords,
    ClientRecord,
    LaunchRecord,
    digest,
    new_client_id,
    new_secret,
    now_us,
)

PASSWORD = "correct horse battery"


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) (RFC 7636 section 4)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


class _Form(html.parser.HTMLParser):
    """The forms of a page: action, method, inputs and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"),
                               "fields": {}, "buttons": [], "options": {}})
        elif not self.forms:
            return
        elif tag == "input" and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self.forms[-1]["options"][a["name"]] = []
        elif tag == "option" and self._select:
            self.forms[-1]["options"][self._select].append(a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms(page: str) -> list[dict[str, Any]]:
    parser = _Form()
    parser.feed(page)
    return parser.forms


def form_with(page: str, name: str) -> dict[str, Any]:
    """The form that has a field, select or button called `name`."""
    for f in forms(page):
        if name in f["fields"] or name in f["options"] or any(b[0] == name
                                                            for b in f["buttons"]):
            return f
    raise AssertionError(f"no form with {name!r} on the page:\n{page[:2000]}")


@dataclass
class SmartServer:
    """A live, authorised telefhir (auth on) with handles on its records and dispatcher."""

    base: str  # http://127.0.0.1:PORT/fhir
    root: str  # http://127.0.0.1:PORT
    app: Flask
    records: AuthRecords
    dispatcher: Dispatcher
    http: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str = "") -> str:
        return f"{self.base}/{path}" if path else self.base

    @property
    def config(self) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/.well-known/smart-configuration")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def seed(self, resource_or_bundle: dict[str, Any]) -> dict[str, Any]:
        """Write through the dispatcher as an internal client (no token)."""
        rt = resource_or_bundle["resourceType"]
        path = "" if rt == "Bundle" else (
            f"{rt}/{resource_or_bundle['id']}" if "id" in resource_or_bundle else rt)
        method = "POST" if rt == "Bundle" or "id" not in resource_or_bundle else "PUT"
        resp = self.dispatcher.handle(FhirRequest(
            method, path, [], {"content-type": "application/fhir+json"},
            json.dumps(resource_or_bundle).encode(), self.base, principal=internal("tests")))
        assert resp.status < 300, resp.resource
        return resp.resource or json.loads(resp.raw or b"{}")

    def add_user(self, username: str, fhir_user: str, admin: bool = False) -> None:
        self.records.add_user(username, hash_password(PASSWORD), fhir_user, admin)

    def register(self, name: str = "App", *, method: str = "none",
                 redirect_uris: tuple[str, ...] = ("http://127.0.0.1:1/callback",),
                 launch_url: str | None = None, jwks: dict[str, Any] | None = None,
                 jwks_url: str | None = None, backend: bool = False,
                 scopes: str | None = None) -> tuple[str, str | None]:
        """(client_id, client_secret or None)."""
        secret = new_secret(24) if method == "client_secret_basic" else None
        cid = new_client_id()  # as `telefhir apps register` makes them (never a leading -)
        self.records.add_client(ClientRecord(
            cid, name, digest(secret) if secret else None, method, redirect_uris, launch_url,
            jwks, jwks_url, backend, tuple(scopes.split()) if scopes is not None else None))
        return cid, secret

    def launch(self, client_id: str, username: str, patient: str,
               encounter: str | None = None) -> str:
        launch = new_secret(16)
        self.records.add_launch(launch, LaunchRecord(client_id, username, patient, encounter,
                                                     now_us() + 3600 * 1_000_000))
        return launch

    def authorize_url(self, client_id: str, scope: str, challenge: str | None,
                      redirect_uri: str = "http://127.0.0.1:1/callback", state: str = "st-1",
                      **extra: str) -> str:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "scope": scope, "state": state, "aud": self.base}
        if challenge is not None:
            params.update(code_challenge=challenge, code_challenge_method="S256")
        params.update(extra)
        return f"{self.root}/auth/authorize?{urlencode(params)}"


class Browser:
    """Drives the sign-in, patient picker and consent pages through their HTML forms, with a
    cookie jar, stopping at the redirect back to the app."""

    def __init__(self, srv: SmartServer) -> None:
        self.srv = srv
        self.http = requests.Session()
        self.last_page = ""

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False)

    def _follow(self, resp: requests.Response) -> requests.Response:
        while resp.status_code in (301, 302, 303) and resp.headers["Location"].startswith(
                ("/", self.srv.root)):
            resp = self.http.get(urljoin(self.srv.root, resp.headers["Location"]),
                                 allow_redirects=False)
        return resp

    def submit(self, page: str, field_name: str, values: dict[str, str],
               button: tuple[str, str] | None = None) -> requests.Response:
        f = form_with(page, field_name)
        data = {**f["fields"], **values}
        if button:
            data[button[0]] = button[1]
        url = urljoin(self.srv.root, f["action"])
        if f["method"].lower() == "post":
            return self._follow(self.http.post(url, data=data, allow_redirects=False))
        return self._follow(self.http.get(url, params=data, allow_redirects=False))

    def sign_in(self, resp: requests.Response, username: str,
                password: str = PASSWORD) -> requests.Response:
        return self.submit(resp.text, "password", {"username": username, "password": password})

    def authorize(self, url: str, username: str | None, patient: str | None = None,
                  decision: str = "approve", password: str = PASSWORD) -> requests.Response:
        """Open `url`, sign in (unless already), pick `patient` if asked, answer consent;
        returns the final answer (a redirect to the app, or a page)."""
        resp = self._follow(self.get(url))
        if resp.status_code == 200 and 'name="password"' in resp.text:
            assert username is not None
            resp = self.sign_in(resp, username, password)
        if resp.status_code == 200 and 'name="patient"' in resp.text:
            assert patient is not None, "asked to pick a patient"
            resp = self.submit(resp.text, "patient", {"patient": patient})
        if resp.status_code == 200 and 'name="decision"' in resp.text:
            self.last_page = resp.text
            resp = self.submit(resp.text, "decision", {}, ("decision", decision))
        return resp


def callback_params(resp: requests.Response) -> dict[str, str]:
    """The query parameters of the redirect back to the app."""
    assert resp.status_code == 302, (resp.status_code, resp.text[:500])
    q = parse_qs(urlsplit(resp.headers["Location"]).query)
    return {k: v[0] for k, v in q.items()}


def exchange(srv: SmartServer, code: str, verifier: str | None, client_id: str,
             secret: str | None = None,
             redirect_uri: str = "http://127.0.0.1:1/callback") -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    auth = None
    if secret is None:
        data["client_id"] = client_id
    else:
        auth = (client_id, secret)
    return requests.post(srv.config["token_endpoint"], data=data, auth=auth)


def serve(app: Flask) -> Iterator[tuple[str, str]]:
    """Serve `app` on a free loopback port; yields (FHIR base, root)."""
    srv: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{srv.server_port}"
    try:
        yield f"{root}/fhir", root
    finally:
        srv.shutdown()
        thread.join(5)
        srv.server_close()


def smart_server_for(app: Flask, base: str, root: str) -> SmartServer:
    ctx = app.extensions["telefhir.context"]
    return SmartServer(base, root, app, records_of(ctx), app.extensions["telefhir.dispatcher"])


def token_for(srv: SmartServer, scope: str, username: str = "doc",
              patient: str | None = None, client_id: str | None = None) -> dict[str, Any]:
    """A token response for `scope`, through the real pages (a public app by default)."""
    cid = client_id or srv.register()[0]
    verifier, challenge = pkce()
    resp = Browser(srv).authorize(srv.authorize_url(cid, scope, challenge), username,
                                  patient=patient)
    params = callback_params(resp)
    assert "code" in params, params
    tok = exchange(srv, params["code"], verifier, cid)
    assert tok.status_code == 200, tok.text
    out: dict[str, Any] = tok.json()
    out["client_id"] = cid
    return out


def bearer(token: dict[str, Any] | str) -> dict[str, str]:
    value = token if isinstance(token, str) else token["access_token"]
    return {"Authorization": f"Bearer {value}", "Accept": "application/fhir+json"}
