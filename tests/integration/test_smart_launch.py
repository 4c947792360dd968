"""Standalone and EHR launches driven by the `fhirclient` Python package (SMART on FHIR's own
client), through the real sign-in, patient picker and consent pages; the id_token verified
against the JWKS by PyJWT (https://hl7.org/fhir/smart-app-launch/app-launch.html)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from fhirclient import client as smart_client

from tests.integration.smart_support import (
    Browser,
    SmartServer,
    bearer,
    callback_params,
    exchange,
    pkce,
    token_for,
)

REDIRECT = "http://127.0.0.1:1/callback"
TELEFHIR = Path(sys.executable).parent / "telefhir"


def test_discovery_documents(smart: SmartServer) -> None:
    r = requests.get(smart.url(".well-known/smart-configuration"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    conf = r.json()
    for key in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint",
                "introspection_endpoint", "revocation_endpoint", "scopes_supported",
                "response_types_supported", "grant_types_supported",
                "token_endpoint_auth_methods_supported",
                "token_endpoint_auth_signing_alg_values_supported", "capabilities"):
        assert key in conf, key
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(
        conf["grant_types_supported"])
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert set(conf["capabilities"]) >= {
        "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
        "client-confidential-asymmetric", "authorize-post", "sso-openid-connect",
        "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
        "context-standalone-patient", "permission-offline", "permission-online",
        "permission-patient", "permission-user", "permission-v1", "permission-v2"}
    assert conf["issuer"] == smart.base
    jwks = requests.get(conf["jwks_uri"]).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])
    oidc = requests.get(f"{conf['issuer']}/.well-known/openid-configuration").json()
    assert oidc["jwks_uri"] == conf["jwks_uri"] and oidc["issuer"] == conf["issuer"]
    meta = requests.get(smart.url("metadata")).json()  # public
    sec = meta["rest"][0]["security"]
    assert sec["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in sec["extension"][0]["extension"]}
    assert uris["authorize"] == conf["authorization_endpoint"]
    assert uris["token"] == conf["token_endpoint"]
    # everything else under the base needs a token
    r = requests.get(smart.url("Patient"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


def _verify_id_token(smart: SmartServer, id_token: str, client_id: str) -> dict[str, object]:
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256"
    kids = {k["kid"] for k in requests.get(smart.config["jwks_uri"]).json()["keys"]}
    assert header["kid"] in kids
    key = jwt.PyJWKClient(smart.config["jwks_uri"]).get_signing_key_from_jwt(id_token)
    claims: dict[str, object] = jwt.decode(id_token, key.key, algorithms=["RS256"],
                                           audience=client_id, issuer=smart.base)
    assert len(str(claims["sub"])) < 256 and claims["exp"] and claims["iat"]
    return claims


def test_standalone_launch_with_fhirclient(world: SmartServer) -> None:
    cid, _ = world.register("Standalone", redirect_uris=(REDIRECT,))
    settings = {"app_id": cid, "api_base": world.base, "redirect_uri": REDIRECT,
                "scope": "launch/patient patient/*.rs openid fhirUser offline_access"}
    app = smart_client.FHIRClient(settings=settings)
    browser = Browser(world)
    answer = browser.authorize(app.authorize_url, "doc", patient="pa")
    assert "Read and search all kinds of records of the selected patient" in browser.last_page
    app.handle_callback(answer.headers["Location"])
    assert app.patient_id == "pa"
    assert app.patient.name[0].family == "Alpha"
    claims = _verify_id_token(world, app.launch_context["id_token"], cid)
    fhir_user = str(claims["fhirUser"])
    assert fhir_user == f"{world.base}/Practitioner/dr1"
    # fhirUser resolves (with the token: Practitioner is not patient data)
    assert requests.get(fhir_user, headers=bearer(app.server.auth.access_token)
                        ).json()["id"] == "dr1"
    # refresh (offline_access): a new access token, the old refresh token is spent
    old_refresh = app.server.auth.refresh_token
    assert app.reauthorize() is not None
    assert app.server.auth.refresh_token != old_refresh
    assert app.patient_id == "pa"
    obs = requests.get(world.url("Observation"), headers=bearer(app.server.auth.access_token))
    assert obs.status_code == 200 and obs.json()["total"] == 3


def test_confidential_app_with_a_secret(world: SmartServer) -> None:
    cid, secret = world.register("Confidential", method="client_secret_basic",
                                 redirect_uris=(REDIRECT,))
    settings = {"app_id": cid, "app_secret": secret, "api_base": world.base,
                "redirect_uri": REDIRECT, "scope": "user/Patient.rs openid fhirUser"}
    app = smart_client.FHIRClient(settings=settings)
    answer = Browser(world).authorize(app.authorize_url, "doc", patient="pb")  # fhirclient
    app.handle_callback(answer.headers["Location"])  # adds launch/patient: the picker asks
    assert app.server.auth.access_token and app.patient_id == "pb"
    r = requests.get(world.url("Patient?_summary=count"),
                     headers=bearer(app.server.auth.access_token))
    assert r.json()["total"] == 2
    # the same code flow without the secret is an invalid_client
    verifier, challenge = pkce()
    params = callback_params(Browser(world).authorize(
        world.authorize_url(cid, "user/Patient.rs", challenge, REDIRECT), "doc"))
    bad = exchange(world, params["code"], verifier, cid, secret="wrong", redirect_uri=REDIRECT)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_ehr_launch_from_the_cli_with_fhirclient(world: SmartServer, db_url: str) -> None:
    cid, _ = world.register("EHR app", redirect_uris=(REDIRECT,),
                            launch_url="http://127.0.0.1:1/launch")
    out = subprocess.run(
        [str(TELEFHIR), "apps", "launch", cid, "--user", "doc", "--patient", "pa",
         "--encounter", "ea", "--db", db_url, "--base-url", world.base],
        capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("http://127.0.0.1:1/launch?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(out).query).items()}
    assert q["iss"] == world.base and q["launch"]
    settings = {"app_id": cid, "api_base": q["iss"], "launch_token": q["launch"],
                "redirect_uri": REDIRECT,
                "scope": "launch openid fhirUser patient/*.rs online_access"}
    app = smart_client.FHIRClient(settings=settings)
    answer = Browser(world).authorize(app.authorize_url, "doc")  # no patient picker
    app.handle_callback(answer.headers["Location"])
    assert app.patient_id == "pa"
    assert app.launch_context["encounter"] == "ea"
    assert app.launch_context["need_patient_banner"] is False
    style = requests.get(app.launch_context["smart_style_url"])
    assert style.status_code == 200 and "color_background" in style.json()
    assert app.reauthorize() is not None  # online_access gives a refresh token too
    enc = requests.get(world.url("Encounter/ea"), headers=bearer(app.server.auth.access_token))
    assert enc.status_code == 200
    # the launch is bound to its user: another user cannot use it
    settings2 = {**settings, "app_id": cid}
    other = smart_client.FHIRClient(settings=settings2)
    page = Browser(world).authorize(other.authorize_url, "ann")
    assert page.status_code == 403 and "another user" in page.text


def test_token_response_fields_and_headers(world: SmartServer) -> None:
    cid, _ = world.register()
    verifier, challenge = pkce()
    params = callback_params(Browser(world).authorize(
        world.authorize_url(cid, "launch/patient patient/Observation.rs openid fhirUser "
                                 "offline_access", challenge), "doc", patient="pa"))
    assert params["state"] == "st-1"
    r = exchange(world, params["code"], verifier, cid)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    t = r.json()
    assert t["token_type"] == "Bearer" and t["expires_in"] == 3600
    assert t["scope"].split() == ["launch/patient", "patient/Observation.rs", "openid",
                                  "fhirUser", "offline_access"]
    assert t["patient"] == "pa" and t["need_patient_banner"] is True
    assert t["fhirUser"] == f"{world.base}/Practitioner/dr1"
    assert t["refresh_token"] and t["id_token"] and t["smart_style_url"]
    # refresh with a narrower scope, and without scope
    r2 = requests.post(world.config["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid,
        "scope": "patient/Observation.rs offline_access"})
    assert r2.status_code == 200 and r2.json()["scope"] == "patient/Observation.rs offline_access"
    r3 = requests.post(world.config["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": r2.json()["refresh_token"],
        "client_id": cid})
    assert r3.status_code == 200 and r3.json()["patient"] == "pa"


def test_deny_returns_access_denied(world: SmartServer) -> None:
    cid, _ = world.register()
    _v, challenge = pkce()
    answer = Browser(world).authorize(world.authorize_url(cid, "user/*.rs", challenge), "doc",
                                      decision="deny")
    params = callback_params(answer)
    assert params["error"] == "access_denied" and params["state"] == "st-1"
    assert "code" not in params


def test_patient_user_standalone_gets_own_context(world: SmartServer) -> None:
    tok = token_for(world, "launch/patient patient/*.rs openid fhirUser", "ann")
    assert tok["patient"] == "pa"  # no picker for a patient
    assert tok["fhirUser"].endswith("/Patient/pa")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_authorize_by_get_and_post(world: SmartServer, method: str) -> None:
    cid, _ = world.register()
    verifier, challenge = pkce()
    url = world.authorize_url(cid, "user/Patient.rs", challenge)
    browser = Browser(world)
    if method == "POST":  # capability authorize-post
        base, _, query = url.partition("?")
        first = browser.http.post(base, data={k: v[0] for k, v in parse_qs(query).items()},
                                  allow_redirects=False)
        assert first.status_code == 302
        answer = browser.authorize(browser.srv.root + first.headers["Location"], "doc")
    else:
        answer = browser.authorize(url, "doc")
    params = callback_params(answer)
    assert exchange(world, params["code"], verifier, cid).status_code == 200


def test_cors_for_browser_apps(world: SmartServer) -> None:
    origin = {"Origin": "http://app.example"}
    pre = requests.options(world.url("Patient"), headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    tok = requests.post(world.config["token_endpoint"], data={"grant_type": "x"},
                        headers=origin)
    assert tok.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in requests.get(world.url("metadata")).headers
    page = requests.get(f"{world.root}/launcher", headers=origin)
    assert "Access-Control-Allow-Origin" not in page.headers  # never the sign-in pages
