"""SMART Backend Services: a client that signs its own assertion with PyJWT (RS384 and ES384,
its JWKS registered or served at a URL), system/ scopes, and the rules around the assertion;
signing key rotation with `telefhir keys rotate` while the server runs
(https://hl7.org/fhir/smart-app-launch/backend-services.html)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.smart_support import SmartServer, bearer, token_for

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TELEFHIR = Path(sys.executable).parent / "telefhir"


class BackendApp:
    """A backend service with its own key pair."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        if alg == "ES384":
            self.key: Any = ec.generate_private_key(ec.SECP384R1())
            self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwk.update(kid=f"k-{alg}", alg=alg, use="sig")
        self.client_id = ""

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def assertion(self, aud: str, alg: str | None = None, exp_in: int = 240,
                  jti: str | None = None, key: Any = None) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": aud,
                  "exp": now + exp_in, "jti": jti or str(uuid.uuid4())}
        return jwt.encode(claims, key or self.key, algorithm=alg or self.alg,
                          headers={"kid": self.jwk["kid"]})

    def token(self, srv: SmartServer, scope: str = "system/*.rs", **kw: Any) -> requests.Response:
        url = srv.config["token_endpoint"]
        return requests.post(url, data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION,
            "client_assertion": kw.pop("assertion", None) or self.assertion(url, **kw)})


@pytest.fixture
def jwks_host() -> Iterator[tuple[str, dict[str, Any]]]:
    """An HTTP server of the app's JWKS: (url, the JWKS it serves, to fill in)."""
    served: dict[str, Any] = {"keys": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_port}/jwks.json", served
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_backend_services_with_registered_jwks(world: SmartServer, alg: str) -> None:
    app = BackendApp(alg)
    app.client_id, _ = world.register("Backend", method="private_key_jwt", jwks=app.jwks,
                                      backend=True, redirect_uris=(), scopes="system/*.rs")
    r = app.token(world, "system/Observation.rs system/Patient.rs")
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["token_type"] == "Bearer" and t["scope"] == "system/Observation.rs system/Patient.rs"
    assert "refresh_token" not in t and "patient" not in t
    bundle = requests.get(world.url("Observation?_total=accurate"), headers=bearer(t)).json()
    assert bundle["total"] == 5  # system access: every patient's
    assert requests.get(world.url("Encounter"), headers=bearer(t)).status_code == 403
    # user/ and patient/ scopes are not for backend services; scopes beyond registration drop
    r = app.token(world, "user/*.rs patient/*.rs system/*.cruds")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = app.token(world, "system/*.cruds system/Patient.r")
    assert r.status_code == 200 and r.json()["scope"] == "system/Patient.r"
    intro = requests.post(world.config["introspection_endpoint"], data={
        "token": t["access_token"], "client_assertion_type": ASSERTION,
        "client_assertion": app.assertion(world.config["token_endpoint"])})
    assert intro.status_code == 200 and intro.json()["active"] is True


def test_backend_assertion_rules(world: SmartServer) -> None:
    app = BackendApp("RS384")
    app.client_id, _ = world.register("Backend", method="private_key_jwt", jwks=app.jwks,
                                      backend=True, redirect_uris=())
    url = world.config["token_endpoint"]
    once = app.assertion(url, jti="same-jti")
    assert app.token(world, assertion=once).status_code == 200

    def refused(r: requests.Response) -> bool:  # RFC 6749 5.2 (401 only with a header)
        return r.status_code in (400, 401) and r.json()["error"] == "invalid_client"

    assert refused(app.token(world, assertion=once))  # replayed jti
    assert refused(app.token(world, alg="RS256"))  # not an offered algorithm
    assert refused(app.token(world, exp_in=3600))  # more than 5 minutes away
    assert refused(app.token(world, exp_in=-120))  # expired
    assert refused(app.token(world, assertion=app.assertion(world.base)))  # wrong aud
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(app.token(world, key=stranger))  # not the registered key
    hs = jwt.encode({"iss": app.client_id, "sub": app.client_id, "aud": url,
                     "exp": int(time.time()) + 60, "jti": "h"}, "s" * 32, algorithm="HS256")
    assert refused(app.token(world, assertion=hs))
    # an assertion spent on a refused request, or on introspection, is spent
    spent = app.assertion(url)
    assert app.token(world, "user/*.rs", assertion=spent).status_code == 400
    assert refused(app.token(world, assertion=spent))
    tok = app.token(world).json()["access_token"]
    intro = app.assertion(url)
    data = {"token": tok, "client_assertion_type": ASSERTION, "client_assertion": intro}
    assert requests.post(world.config["introspection_endpoint"], data=data).json()["active"]
    assert refused(requests.post(world.config["introspection_endpoint"], data=data))
    # a backend app cannot use the authorization code flow
    r = requests.post(url, data={"grant_type": "authorization_code", "code": "x",
                                 "client_assertion_type": ASSERTION,
                                 "client_assertion": app.assertion(url)})
    assert r.status_code in (400, 401) and r.json()["error"] in ("unauthorized_client",
                                                                  "invalid_grant")


def test_backend_services_with_jwks_url(world: SmartServer,
                                        jwks_host: tuple[str, dict[str, Any]]) -> None:
    url, served = jwks_host
    app = BackendApp("ES384")
    served["keys"] = [app.jwk]
    app.client_id, _ = world.register("Backend", method="private_key_jwt", jwks_url=url,
                                      backend=True, redirect_uris=())
    r = app.token(world, "system/Patient.rs")
    assert r.status_code == 200, r.text
    assert requests.get(world.url("Patient"), headers=bearer(r.json())).json()["total"] == 2


def test_keys_rotate_while_serving(world: SmartServer, db_url: str) -> None:
    before = token_for(world, "openid fhirUser user/Patient.rs")
    old_kid = jwt.get_unverified_header(before["id_token"])["kid"]
    out = subprocess.run([str(TELEFHIR), "keys", "rotate", "--db", db_url],
                         capture_output=True, text=True, check=True).stdout
    new_kid = json.loads(out)["active_kid"]
    assert new_kid != old_kid
    kids = [k["kid"] for k in requests.get(world.config["jwks_uri"]).json()["keys"]]
    assert old_kid in kids and new_kid in kids  # the old key stays until its tokens expire
    after = token_for(world, "openid fhirUser user/Patient.rs")
    assert jwt.get_unverified_header(after["id_token"])["kid"] == new_kid
    client = jwt.PyJWKClient(world.config["jwks_uri"])
    for tok in (before, after):
        key = client.get_signing_key_from_jwt(tok["id_token"])
        jwt.decode(tok["id_token"], key.key, algorithms=["RS256"], audience=tok["client_id"])
    # tokens issued before the rotation still work
    assert requests.get(world.url("Patient"), headers=bearer(before)).status_code == 200


def test_confidential_asymmetric_app_in_the_code_flow(world: SmartServer) -> None:
    """client-confidential-asymmetric: a user-facing app that authenticates at the token
    endpoint with a signed assertion instead of a secret."""
    from tests.integration.smart_support import Browser, callback_params, pkce

    app = BackendApp("ES384")
    app.client_id, _ = world.register("Asymmetric", method="private_key_jwt", jwks=app.jwks)
    verifier, challenge = pkce()
    params = callback_params(Browser(world).authorize(
        world.authorize_url(app.client_id, "user/Patient.rs offline_access", challenge),
        "doc"))
    url = world.config["token_endpoint"]
    data = {"grant_type": "authorization_code", "code": params["code"],
            "redirect_uri": "http://127.0.0.1:1/callback", "code_verifier": verifier,
            "client_assertion_type": ASSERTION}
    no_assertion = requests.post(url, data={**data, "client_id": app.client_id})
    assert no_assertion.status_code in (400, 401)
    r = requests.post(url, data={**data, "client_assertion": app.assertion(url)})
    assert r.status_code == 200, r.text
    refresh = requests.post(url, data={
        "grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"],
        "client_assertion_type": ASSERTION, "client_assertion": app.assertion(url)})
    assert refresh.status_code == 200
    assert requests.get(world.url("Patient"), headers=bearer(refresh.json())).status_code == 200
