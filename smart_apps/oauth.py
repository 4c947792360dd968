"""The OAuth 2.0 authorization server, built on Authlib's grants and endpoints: authorization
code with PKCE S256 (RFC 6749 section 4.1, RFC 7636), refresh tokens rotated on use (RFC 6749
section 6, OAuth 2.0 Security BCP 4.14), client credentials with a signed JWT assertion (SMART
Backend Services, RFC 7523), OpenID Connect id_tokens, introspection (RFC 7662) and revocation
(RFC 7009). SMART App Launch: https://hl7.org/fhir/smart-app-launch/app-launch.html and
https://hl7.org/fhir/smart-app-launch/backend-services.html.

Only the models (how apps, codes and tokens are kept: smart_apps.records) and the SMART parts
(aud, launch context, the extra token response fields) are ours."""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from flask import g
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.context import Context
from fhir_server.principal import SecurityEvent
from smart_apps.discovery import ASSERTION_ALGS
from smart_apps.keys import SigningKeys
from smart_apps.records import (
    AuthRecords,
    ClientRecord,
    CodeRecord,
    TokenRecord,
    UserRecord,
    digest,
    new_secret,
    now_us,
)
from smart_apps.scopes import narrow, parse_scope, split_scope

log = logging.getLogger("telefhir.auth")

ASSERTION_AUTH = JWTBearerClientAssertion.CLIENT_AUTH_METHOD  # Authlib's name: private_key_jwt
CODE_SECONDS = 60  # authorization codes are short-lived (RFC 6749 section 4.1.2: 10 min at most)
ONLINE_SECONDS = 12 * 3600  # online_access refresh tokens last a working session
_METHODS = {"none": "none", "client_secret_basic": "client_secret_basic",
            "private_key_jwt": ASSERTION_AUTH}


@dataclass(frozen=True)
class Approval:
    """What the person approved on the consent page: who, for which patient and encounter, and
    the scopes granted (Authlib's `grant_user`)."""

    user: UserRecord
    scope: str
    patient: str | None
    encounter: str | None


class Client(ClientMixin):
    """A registered app as Authlib sees it (https://datatracker.ietf.org/doc/html/rfc6749#section-2)."""

    def __init__(self, rec: ClientRecord) -> None:
        self.rec = rec
        self.client_id = rec.client_id

    def get_client_id(self) -> str:
        return self.rec.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # redirect_uri is required in every request, and must match exactly

    def get_allowed_scope(self, scope: str) -> str:
        wanted = split_scope(scope)
        if self.rec.backend:
            wanted = [s for s in wanted if (p := parse_scope(s)) is not None
                      and p.context == "system"]
        return " ".join(narrow(wanted, list(self.rec.scopes) if self.rec.scopes else None))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.rec.redirect_uris  # exact match (SMART, RFC 6749 3.1.2)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.rec.secret_hash:
            return False
        return hmac.compare_digest(digest(client_secret), self.rec.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return _METHODS.get(self.rec.auth_method) == method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and not self.rec.backend

    def check_grant_type(self, grant_type: str) -> bool:
        if self.rec.backend:
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")


class Token(TokenMixin):
    """An issued token as Authlib's endpoints see it."""

    def __init__(self, rec: TokenRecord, client: Client | None) -> None:
        self.rec = rec
        self.client = client

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.rec.client_id)

    def get_scope(self) -> str:
        return self.rec.scope

    def get_expires_in(self) -> int:
        return max(0, (self.rec.expires_us - self.rec.issued_us) // 1_000_000)

    def get_expires_at(self) -> int:
        return self.rec.expires_us // 1_000_000

    def is_expired(self) -> bool:
        return self.rec.expires_us <= now_us()

    def is_revoked(self) -> bool:
        return self.rec.revoked or (self.rec.kind == "refresh" and self.rec.used)

    def get_user(self) -> str | None:
        return self.rec.username

    def get_client(self) -> ClientMixin:
        assert self.client is not None
        return self.client


class Code:
    """An authorization code being exchanged (Authlib's AuthorizationCodeMixin)."""

    def __init__(self, rec: CodeRecord) -> None:
        self.rec = rec

    def get_redirect_uri(self) -> str:
        return self.rec.redirect_uri

    def get_scope(self) -> str:
        return self.rec.scope

    def get_nonce(self) -> str | None:
        return self.rec.nonce

    def get_auth_time(self) -> int:
        return self.rec.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    @property
    def code_challenge(self) -> str | None:
        return self.rec.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.rec.code_challenge_method


class StoredRequest(OAuth2Request):
    """An authorization request kept across the sign-in, patient and consent pages (its
    parameters as the app sent them)."""

    def __init__(self, uri: str, params: dict[str, str]) -> None:
        super().__init__("GET", uri, headers={})
        self.payload = BasicOAuth2Payload(params)

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return {}


class SmartServer(AuthorizationServer):
    """Authlib's Flask authorization server over our records, with the context that issues
    SecurityEvents for the audit trail."""

    def __init__(self, ctx: Context, records: AuthRecords, keys: SigningKeys) -> None:
        super().__init__()
        self.ctx = ctx
        self.records = records
        self.keys = keys
        self._query_client = self.find_client
        self._save_token = self.store_token

    def find_client(self, client_id: str) -> Client | None:
        rec = self.records.client(client_id)
        return Client(rec) if rec else None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return FlaskOAuth2Request(flask_request)

    # -- security events --------------------------------------------------------------------

    def event(self, action: str, outcome: str, client_id: str | None = None,
              username: str | None = None, **detail: Any) -> None:
        """Raise a SecurityEvent (fhir_server.principal) for the audit trail."""
        addr = flask_request.remote_addr if flask_request else None
        self.ctx.hooks.run("security_event", self.ctx, SecurityEvent(
            action=action, outcome=outcome, client_id=client_id, username=username,
            remote_addr=addr, detail={k: v for k, v in detail.items() if v is not None}))

    # -- tokens -----------------------------------------------------------------------------

    def make_token(self, grant_type: str, client: Client, user: Any = None,
                   scope: str | None = None, expires_in: int | None = None,
                   include_refresh_token: bool = True) -> dict[str, Any]:
        """The token response body (https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5)."""
        cfg = self.ctx.config
        scopes = split_scope(client.get_allowed_scope(scope or ""))
        if not scopes and grant_type == "client_credentials":
            raise InvalidScopeError("None of the requested scopes can be granted to this "
                                    "backend service (system/ scopes it is registered for)")
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": generate_token(43),
            "expires_in": expires_in or cfg.access_token_seconds,
            "scope": " ".join(scopes),
        }
        if include_refresh_token and grant_type != "client_credentials" and (
                "offline_access" in scopes or "online_access" in scopes):
            token["refresh_token"] = generate_token(48)
        return token

    def store_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Keep hashes of the issued tokens, with the context they carry."""
        cfg = self.ctx.config
        client: Client = request.client
        t = now_us()
        context = getattr(request, "smart_context", None) or {}
        family = context.get("family") or new_secret(16)
        user: UserRecord | None = context.get("user")
        scope = token["scope"]
        base = TokenRecord(
            token_hash=digest(token["access_token"]), kind="access", family=family,
            client_id=client.client_id, username=user.username if user else None,
            fhir_user=user.fhir_user if user else None, scope=scope,
            patient=context.get("patient"), encounter=context.get("encounter"),
            admin=bool(user and user.admin), issued_us=t,
            expires_us=t + int(token["expires_in"]) * 1_000_000, revoked=False, used=False,
            jti=new_secret(12))
        records = [base]
        if token.get("refresh_token"):
            online = "offline_access" not in split_scope(scope)
            life = min(cfg.refresh_token_seconds, ONLINE_SECONDS) if online \
                else cfg.refresh_token_seconds
            records.append(replace(base, token_hash=digest(token["refresh_token"]),
                                   kind="refresh", expires_us=t + life * 1_000_000,
                                   jti=new_secret(12)))
        assertion = g.pop("smart_assertion", None)
        if not self.records.add_tokens(records, assertion):
            raise InvalidClientError(description="The client assertion was used before")
        request.smart_context = {**context, "family": family, "jti": base.jti}


def record_assertion(server: SmartServer) -> bool:
    """Record the client assertion of this request if no token recorded it (an endpoint
    that issues none, or a failed request); False if it had been used meanwhile."""
    assertion = g.pop("smart_assertion", None)
    if assertion is None:
        return True
    return server.records.use_assertion(*assertion)


def _smart_fields(server: SmartServer, grant: Any, response: Any) -> None:
    """The SMART additions to a token response: patient, encounter, need_patient_banner,
    smart_style_url, fhirUser (https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5)."""
    _status, token, _headers = response
    if not isinstance(token, dict) or "access_token" not in token:
        return
    context = getattr(grant.request, "smart_context", None) or {}
    user: UserRecord | None = context.get("user")
    if context.get("patient"):
        token["patient"] = context["patient"]
    if context.get("encounter"):
        token["encounter"] = context["encounter"]
    if user is not None:
        token["need_patient_banner"] = not context.get("launched_in_ehr", False)
        token["smart_style_url"] = server_url(server, "/auth/smart-style.json")
        if "fhirUser" in split_scope(token.get("scope")):
            token["fhirUser"] = f"{fhir_base(server)}/{user.fhir_user}"
    server.event("token", "success", client_id=grant.request.client.client_id,
                 username=user.username if user else None, grant_type=grant.GRANT_TYPE,
                 scope=token.get("scope"), patient=context.get("patient"),
                 token_id=context.get("jti"))


def fhir_base(server: SmartServer) -> str:
    """The FHIR base URL clients see (the `aud` tokens are for, the id_token issuer)."""
    cfg = server.ctx.config
    if cfg.public_base_url:
        return cfg.public_base_url.rstrip("/")
    return flask_request.host_url.rstrip("/") + cfg.base_path


def server_url(server: SmartServer, path: str) -> str:
    """An absolute URL of one of the authorization server's own paths."""
    cfg = server.ctx.config
    if cfg.public_base_url:
        base = cfg.public_base_url.rstrip("/")
        if base.endswith(cfg.base_path):
            base = base[: -len(cfg.base_path)]
        return base + path
    return flask_request.host_url.rstrip("/") + path


class S256Challenge(CodeChallenge):
    """PKCE with S256 only, required for every client (SMART App Launch 2:
    https://hl7.org/fhir/smart-app-launch/app-launch.html#considerations-for-pkce-support)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        from authlib.oauth2.rfc6749.errors import InvalidRequestError

        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with "
                                      "code_challenge_method=S256", redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256",
                                      redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        from authlib.oauth2.rfc6749.errors import InvalidRequestError

        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required)")
        super().validate_code_verifier(grant, result)


class SmartAuthorizationCode(grants.AuthorizationCodeGrant):
    """Authorization code grant over our records; the code carries the launch context."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none", ASSERTION_AUTH]
    server: SmartServer

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        approval: Approval = request.user
        data = request.payload.data
        self.server.records.add_code(code, CodeRecord(
            code_hash="", client_id=request.client.client_id,
            username=approval.user.username, redirect_uri=request.payload.redirect_uri,
            scope=approval.scope, nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            patient=approval.patient, encounter=approval.encounter,
            auth_time=int(time.time()), expires_us=now_us() + CODE_SECONDS * 1_000_000,
            used=False, family=new_secret(16)))

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        rec, reused = self.server.records.claim_code(code, client.client_id)
        if reused is not None:  # RFC 6749 4.1.2: revoke what the code gave
            n = self.server.records.revoke_family(reused.family)
            self.server.event("code-reuse", "failure", client_id=client.client_id,
                              username=reused.username, revoked_tokens=n)
        if rec is None:
            return None
        user = self.server.records.user(rec.username)
        self.request.smart_context = {
            "family": rec.family, "user": user, "patient": rec.patient,
            "encounter": rec.encounter,
            "launched_in_ehr": "launch" in split_scope(rec.scope)}
        return Code(rec)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        pass  # claimed (used = 1) when it was queried

    def authenticate_user(self, authorization_code: Code) -> UserRecord | None:
        return self.server.records.user(authorization_code.rec.username)


class SmartRefreshToken(grants.RefreshTokenGrant):
    """Refresh tokens are rotated on use; a refresh token used twice revokes its whole family
    (https://datatracker.ietf.org/doc/html/draft-ietf-oauth-security-topics#section-4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none", ASSERTION_AUTH]
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: SmartServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        rec = self.server.records.token(refresh_token)
        if rec is None or rec.kind != "refresh":
            return None
        if rec.used and not rec.revoked:
            n = self.server.records.revoke_family(rec.family)
            self.server.event("refresh-reuse", "failure", client_id=rec.client_id,
                              username=rec.username, revoked_tokens=n)
            return None
        if not rec.active:
            return None
        user = self.server.records.user(rec.username) if rec.username else None
        self.request.smart_context = {
            "family": rec.family, "user": user, "patient": rec.patient,
            "encounter": rec.encounter, "launched_in_ehr": "launch" in split_scope(rec.scope)}
        return Token(rec, None)

    def authenticate_user(self, refresh_token: Token) -> UserRecord | None:
        return self.request.smart_context.get("user")

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if not self.server.records.claim_refresh(refresh_token.rec.token_hash):
            n = self.server.records.revoke_family(refresh_token.rec.family)
            self.server.event("refresh-reuse", "failure", client_id=refresh_token.rec.client_id,
                              username=refresh_token.rec.username, revoked_tokens=n)
            raise InvalidGrantError("The refresh token was used twice; its tokens are revoked")
        self.server.event("refresh", "success", client_id=refresh_token.rec.client_id,
                          username=refresh_token.rec.username)


class SmartClientCredentials(grants.ClientCredentialsGrant):
    """SMART Backend Services: client_credentials with a signed JWT assertion, system/ scopes
    (https://hl7.org/fhir/smart-app-launch/backend-services.html)."""

    TOKEN_ENDPOINT_AUTH_METHODS = [ASSERTION_AUTH]


class SmartOpenIDCode(OpenIDCode):
    """id_tokens signed RS256 with the server's active key, carrying `fhirUser`
    (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-identity-data)."""

    def __init__(self, server: SmartServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.keys.active()

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": "RS256", "kid": self.server.keys.active().kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": fhir_base(self.server), "aud": [client.client_id],
                "iat": now, "exp": now + self.server.ctx.config.access_token_seconds}

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        return self.get_client_claims(request.client)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.server.records.code_nonce_exists(request.payload.client_id, nonce)

    def generate_user_info(self, user: UserRecord, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.username}
        if "fhirUser" in split_scope(scope):
            info["fhirUser"] = f"{fhir_base(self.server)}/{user.fhir_user}"
        if "profile" in split_scope(scope):
            info["preferred_username"] = user.username
        return info


class AssertionAuth(JWTBearerClientAssertion):
    """private_key_jwt: a JWT signed RS384 or ES384 by a key of the client's JWKS (registered,
    or fetched from its JWKS URL), for the token endpoint, once only (jti), at most five
    minutes ahead (https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html)."""

    def __init__(self, server: SmartServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server
        self._fetched: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get_audiences(self) -> list[str]:
        return [server_url(self.server, "/auth/token")]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except JoseError as e:
            raise InvalidClientError(
                description=f"Invalid client assertion ({e.error}); it must be signed "
                            f"{' or '.join(ASSERTION_ALGS)} by a key of the app's JWKS") from e
        exp = token.claims.get("exp")
        if isinstance(exp, int) and exp > time.time() + 300 + 30:
            raise InvalidClientError(description="The assertion's exp is more than five "
                                                 "minutes away")
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """False for an assertion seen before. A new one is recorded with the token it buys
        (one database transaction: store_token), or by the view when none is issued
        (record_assertion), so each is used once."""
        exp = int(claims.get("exp", time.time() + 300))
        if self.server.records.assertion_seen(str(claims["sub"]), str(jti)):
            return False
        g.smart_assertion = (str(claims["sub"]), str(jti), exp * 1_000_000)
        return True

    def resolve_client_public_key(self, client: Client) -> KeySet:
        jwks = client.rec.jwks
        if jwks is None and client.rec.jwks_url:
            jwks = self._fetch(client.rec.jwks_url)
        if not jwks:
            raise InvalidClientError(description="The app has no JWKS")
        try:
            return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise InvalidClientError(description=f"The app's JWKS cannot be read: {e}") from e

    def _fetch(self, url: str) -> dict[str, Any]:
        """The JWKS at `url`, cached five minutes."""
        with self._lock:
            hit = self._fetched.get(url)
            if hit and hit[0] > time.time():
                return hit[1]
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (the app's URL)
                data = json.loads(resp.read(1_000_000))
        except (OSError, ValueError) as e:
            raise InvalidClientError(description=f"Cannot fetch the app's JWKS: {e}") from e
        with self._lock:
            self._fetched[url] = (time.time() + 300, data)
        return data


class SmartIntrospection(IntrospectionEndpoint):
    """RFC 7662 token introspection, for resource servers and the token's own app."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "none", ASSERTION_AUTH]
    server: SmartServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        rec = self.server.records.token(token_string)
        if rec is None:
            return None
        client = self.server.find_client(rec.client_id)
        return Token(rec, client) if client else None

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return token.rec.client_id == client.client_id or client.rec.auth_method != "none"

    def introspect_token(self, token: Token) -> dict[str, Any]:
        r = token.rec
        out: dict[str, Any] = {
            "active": r.active, "scope": r.scope, "client_id": r.client_id,
            "token_type": "Bearer" if r.kind == "access" else "refresh_token",
            "exp": r.expires_us // 1_000_000, "iat": r.issued_us // 1_000_000,
            "iss": fhir_base(self.server), "aud": fhir_base(self.server), "jti": r.jti,
        }
        if r.username:
            out["sub"] = out["username"] = r.username
            out["fhirUser"] = f"{fhir_base(self.server)}/{r.fhir_user}"
        if r.patient:
            out["patient"] = r.patient
        if r.encounter:
            out["encounter"] = r.encounter
        self.server.event("introspect", "success", client_id=r.client_id, username=r.username,
                          token_id=r.jti)
        return out

    def create_introspection_payload(self, token: Token | None) -> dict[str, Any]:
        if token is None or not token.rec.active:
            return {"active": False}
        return self.introspect_token(token)


class SmartRevocation(RevocationEndpoint):
    """RFC 7009 revocation: revoking an access or a refresh token revokes every token of its
    authorization (the refresh token cannot mint new access tokens, RFC 7009 section 2.1)."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "none", ASSERTION_AUTH]
    server: SmartServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        rec = self.server.records.token(token_string)
        if rec is None:
            return None
        client = self.server.find_client(rec.client_id)
        return Token(rec, client) if client else None

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        n = self.server.records.revoke_family(token.rec.family)
        self.server.event("revoke", "success", client_id=token.rec.client_id,
                          username=token.rec.username, revoked_tokens=n, token_id=token.rec.jti)


class SmartFields:
    """Grant extension: every token response gets the SMART fields (registered after the
    OpenID Connect extension, so after the id_token is added)."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response",
                            lambda g, response: _smart_fields(g.server, g, response))


def build_server(ctx: Context, records: AuthRecords, keys: SigningKeys, app: Any) -> SmartServer:
    """The configured authorization server for one Flask app."""
    server = SmartServer(ctx, records, keys)
    server.init_app(app)
    server.register_token_generator("default", server.make_token)
    server.register_client_auth_method(ASSERTION_AUTH, AssertionAuth(server))
    server.register_grant(SmartAuthorizationCode, [S256Challenge(required=True),
                                                   SmartOpenIDCode(server), SmartFields()])
    server.register_grant(SmartRefreshToken, [SmartFields()])
    server.register_grant(SmartClientCredentials, [SmartFields()])
    server.register_endpoint(SmartIntrospection(server))
    server.register_endpoint(SmartRevocation(server))
    return server


__all__ = ["Approval", "OAuth2Error", "SmartServer", "StoredRequest", "build_server"]
