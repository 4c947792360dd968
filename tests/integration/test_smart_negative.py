"""Every rule of the authorization server, broken once: PKCE, aud, redirect URI, codes used
twice, refresh tokens used twice, revoked and expired tokens, malformed headers, clients that
do not exist or fail to authenticate, CSRF, lockout and rate limits (RFC 6749 section 5.2
error codes; https://hl7.org/fhir/smart-app-launch/app-launch.html)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from fhir_server.app import create_app
from fhir_server.config import Config
from fhir_server.store.base import ResourceStore
from tests.integration.smart_support import (
    PASSWORD,
    Browser,
    SmartServer,
    bearer,
    callback_params,
    exchange,
    form_with,
    pkce,
    serve,
    token_for,
)


def code_for(srv: SmartServer, cid: str, scope: str = "user/Patient.rs offline_access",
             challenge: str | None = None, **extra: str) -> str:
    if challenge is None:
        challenge = pkce()[1]
    params = callback_params(Browser(srv).authorize(srv.authorize_url(cid, scope, challenge,
                                                                      **extra), "doc"))
    assert "code" in params, params
    return params["code"]


def test_pkce_is_required_and_checked(world: SmartServer) -> None:
    cid, _ = world.register()
    # no challenge at all: no code, an error back to the app
    answer = Browser(world).authorize(world.authorize_url(cid, "user/Patient.rs", None), "doc")
    assert callback_params(answer)["error"] == "invalid_request"
    # plain is not offered
    answer = Browser(world).authorize(world.authorize_url(
        cid, "user/Patient.rs", None, code_challenge="a" * 43, code_challenge_method="plain"),
        "doc")
    assert callback_params(answer)["error"] == "invalid_request"
    verifier, challenge = pkce()
    code = code_for(world, cid, challenge=challenge)
    wrong = exchange(world, code, pkce()[0], cid)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = code_for(world, cid, challenge=challenge)
    missing = exchange(world, code, None, cid)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code = code_for(world, cid, challenge=challenge)
    blank = exchange(world, code, "", cid)
    assert blank.status_code == 400
    assert exchange(world, code_for(world, cid, challenge=challenge), verifier,
                    cid).status_code == 200


def test_bad_aud_gives_no_code(world: SmartServer) -> None:
    cid, _ = world.register()
    for aud in ("https://elsewhere.example/fhir", ""):
        answer = Browser(world).authorize(world.authorize_url(
            cid, "user/Patient.rs", pkce()[1], aud=aud), "doc")
        params = callback_params(answer)
        assert "code" not in params and params["error"] == "invalid_request"
        assert "aud" in params["error_description"]


def test_state_is_required(world: SmartServer) -> None:
    cid, _ = world.register()
    params = callback_params(Browser(world).authorize(
        world.authorize_url(cid, "user/Patient.rs", pkce()[1], state=""), "doc"))
    assert params["error"] == "invalid_request" and "code" not in params


def test_redirect_uri_must_match_exactly(world: SmartServer) -> None:
    cid, _ = world.register(redirect_uris=("http://127.0.0.1:1/callback",))
    for uri in ("http://127.0.0.1:1/callback/", "http://127.0.0.1:1/evil",
                "http://127.0.0.1:1/callback?x=1"):
        resp = Browser(world).authorize(world.authorize_url(cid, "user/Patient.rs", pkce()[1],
                                                            redirect_uri=uri), "doc")
        assert resp.status_code == 400, uri  # an error page: never a redirect to that URI
        assert "Location" not in resp.headers
    # the token request must name the same redirect_uri as the authorization request
    verifier, challenge = pkce()
    code = code_for(world, cid, challenge=challenge)
    r = exchange(world, code, verifier, cid, redirect_uri="http://127.0.0.1:1/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_unknown_client(world: SmartServer) -> None:
    resp = Browser(world).authorize(world.authorize_url("no-such-app", "user/Patient.rs",
                                                        pkce()[1]), "doc")
    assert resp.status_code == 400 and "Location" not in resp.headers
    r = requests.post(world.config["token_endpoint"], data={
        "grant_type": "authorization_code", "code": "x", "client_id": "no-such-app",
        "redirect_uri": "http://127.0.0.1:1/callback", "code_verifier": "v" * 43})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    r = requests.post(world.config["token_endpoint"], data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] in ("unsupported_grant_type",
                                                          "invalid_client")


def test_code_used_twice_revokes_its_tokens(world: SmartServer) -> None:
    cid, _ = world.register()
    verifier, challenge = pkce()
    code = code_for(world, cid, challenge=challenge)
    first = exchange(world, code, verifier, cid)
    assert first.status_code == 200
    again = exchange(world, code, verifier, cid)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # RFC 6749 4.1.2: the tokens the code gave are revoked
    r = requests.get(world.url("Patient"), headers=bearer(first.json()))
    assert r.status_code == 401
    bad = exchange(world, "not-a-code", verifier, cid)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


def test_refresh_token_reuse_revokes_the_family(world: SmartServer) -> None:
    tok = token_for(world, "user/Patient.rs offline_access")
    url = world.config["token_endpoint"]
    data = {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
            "client_id": tok["client_id"]}
    second = requests.post(url, data=data)
    assert second.status_code == 200
    reused = requests.post(url, data=data)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # the whole family is gone: the new access token and the new refresh token
    assert requests.get(world.url("Patient"), headers=bearer(second.json())).status_code == 401
    r = requests.post(url, data={**data, "refresh_token": second.json()["refresh_token"]})
    assert r.status_code == 400
    r = requests.post(url, data={**data, "refresh_token": "garbage"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # a refresh token of another app is not yours
    other = world.register()[0]
    fresh = token_for(world, "user/Patient.rs offline_access")
    r = requests.post(url, data={"grant_type": "refresh_token", "client_id": other,
                                 "refresh_token": fresh["refresh_token"]})
    assert r.status_code == 400
    # asking more than was granted
    r = requests.post(url, data={"grant_type": "refresh_token", "client_id": fresh["client_id"],
                                 "refresh_token": fresh["refresh_token"],
                                 "scope": "user/*.cruds"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_no_refresh_token_without_offline_or_online_access(world: SmartServer) -> None:
    tok = token_for(world, "user/Patient.rs")
    assert "refresh_token" not in tok


def test_revoked_token(world: SmartServer) -> None:
    tok = token_for(world, "user/Patient.rs offline_access")
    assert requests.get(world.url("Patient"), headers=bearer(tok)).status_code == 200
    r = requests.post(world.config["revocation_endpoint"],
                      data={"token": tok["refresh_token"], "client_id": tok["client_id"]})
    assert r.status_code == 200
    denied = requests.get(world.url("Patient"), headers=bearer(tok))
    assert denied.status_code == 401
    assert 'error="invalid_token"' in denied.headers["WWW-Authenticate"]
    assert "revoked" in denied.json()["issue"][0]["diagnostics"]
    r = requests.post(world.config["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
        "client_id": tok["client_id"]})
    assert r.status_code == 400
    intro = requests.post(world.config["introspection_endpoint"],
                          data={"token": tok["access_token"], "client_id": tok["client_id"]})
    assert intro.json() == {"active": False}


def test_expired_token(world: SmartServer) -> None:
    tok = token_for(world, "user/Patient.rs")
    from smart_apps.records import digest

    with world.records.store.transaction() as tx:  # an hour later
        tx.query("UPDATE smart_tokens SET expires_us = expires_us - 3600000001 "
                 "WHERE token_hash = ?", (digest(tok["access_token"]),))
    r = requests.get(world.url("Patient"), headers=bearer(tok))
    assert r.status_code == 401 and "expired" in r.json()["issue"][0]["diagnostics"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_and_malformed_tokens(world: SmartServer) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dTpw"},
                    {"Authorization": "Bearer not-a-token"}):
        r = requests.get(world.url("Observation"), headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["resourceType"] == "OperationOutcome"
    # metadata and discovery stay public
    assert requests.get(world.url("metadata")).status_code == 200


def test_introspection(world: SmartServer) -> None:
    tok = token_for(world, "launch/patient patient/*.rs", patient="pa")
    r = requests.post(world.config["introspection_endpoint"],
                      data={"token": tok["access_token"], "client_id": tok["client_id"]})
    body = r.json()
    assert body["active"] is True and body["patient"] == "pa"
    assert body["scope"] == "launch/patient patient/*.rs" and body["client_id"] == tok["client_id"]
    assert body["exp"] > body["iat"]
    unknown = requests.post(world.config["introspection_endpoint"],
                            data={"token": "nope", "client_id": tok["client_id"]})
    assert unknown.json() == {"active": False}


def test_csrf_is_checked_on_every_form(world: SmartServer) -> None:
    cid, _ = world.register()
    browser = Browser(world)
    page = browser._follow(browser.get(world.authorize_url(cid, "user/Patient.rs",
                                                           pkce()[1])))
    form = form_with(page.text, "password")
    data = {**form["fields"], "username": "doc", "password": PASSWORD, "csrf_token": "forged"}
    r = browser.http.post(world.root + "/auth/login", data=data, allow_redirects=False)
    assert r.status_code == 400 and "user" not in browser.http.cookies.get_dict().get("x", "")
    signed = browser.sign_in(page, "doc")
    consent = form_with(signed.text, "decision")
    r = browser.http.post(world.root + "/auth/consent", data={
        **consent["fields"], "csrf_token": "forged", "decision": "approve"},
        allow_redirects=False)
    assert r.status_code == 400 and "Location" not in r.headers
    cookie = next(c for c in browser.http.cookies if c.name == "telefhir_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    raw = browser.http.get(world.root + "/launcher").headers.get("Set-Cookie", "")
    assert raw == "" or "SameSite=Lax" in raw


def test_lockout_after_failed_sign_ins(world: SmartServer) -> None:
    cid, _ = world.register()
    url = world.authorize_url(cid, "user/Patient.rs", pkce()[1])
    browser = Browser(world)
    for _ in range(5):
        page = browser._follow(browser.get(url))
        r = browser.sign_in(page, "doc", "wrong password")
        assert r.status_code == 401 and "wrong password" in r.text
    page = browser._follow(browser.get(url))
    r = browser.sign_in(page, "doc")  # the right password, but locked now
    assert r.status_code == 403 and "locked" in r.text
    # another user is not affected
    assert callback_params(Browser(world).authorize(url, "admin"))["code"]


def test_token_endpoint_rate_limit(store: ResourceStore, db_url: str) -> None:
    app = create_app(Config(db_url=db_url, auth=True, auth_failure_rate=3), store=store)
    for _base, root in serve(app):
        codes = [requests.post(f"{root}/auth/token", data={
            "grant_type": "authorization_code", "code": "bad", "client_id": "x"}).status_code
            for _ in range(5)]
        assert all(c in (400, 401) for c in codes[:3]) and codes[3:] == [429, 429], codes
        r = requests.post(f"{root}/auth/token", data={"grant_type": "client_credentials"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "60"


def test_authorize_errors_carry_state(world: SmartServer) -> None:
    cid, _ = world.register()
    url = world.authorize_url(cid, "user/Patient.rs", pkce()[1], response_type="token",
                              state="s-9")
    resp = Browser(world).get(url)
    assert resp.status_code == 302
    q = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert q["state"] == ["s-9"] and q["error"] == ["unsupported_response_type"]


def test_patient_cannot_pick_another_patient(world: SmartServer) -> None:
    cid, _ = world.register()
    b = Browser(world)
    page = b._follow(b.get(world.authorize_url(cid, "launch/patient patient/*.rs",
                                               pkce()[1])))
    consent = b.sign_in(page, "ann")  # a patient: straight to consent, own record
    assert 'name="decision"' in consent.text and "Patient/pa" in consent.text
    txn = form_with(consent.text, "decision")["fields"]["txn"]
    csrf = form_with(consent.text, "decision")["fields"]["csrf_token"]
    r = b.http.post(f"{world.root}/auth/patient", data={"txn": txn, "csrf_token": csrf,
                                                        "patient": "pb"},
                    allow_redirects=False)
    assert r.status_code == 400
    launcher = b.http.get(f"{world.root}/launcher").text
    assert "Patient/pb" not in launcher and "Patient/pa" in launcher
