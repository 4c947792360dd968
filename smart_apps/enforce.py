"""SMART enforcement on every FHIR interaction, as hooks (fhir_server.hooks):

- request_received: the bearer token becomes `req.principal` (401 with `WWW-Authenticate:
  Bearer` when it is malformed, unknown, expired or revoked: RFC 6750 section 3);
- authorize: each interaction (and each Bundle entry) needs a scope with its permission letter
  on its resource type, else 403; no token at all is a 401;
- restrict: row-level limits (the patient compartment, granular scope filters) that the search
  engine, history, read and the write path apply (fhir_server.access);
- before_operation: what the operation declares it `needs`;
- capability_statement: `rest.security`.

Internal principals (fhir_server.principal.internal) pass everything. With `auth` off
(`serve --no-auth`) a valid token still names the caller (for the audit trail) but nothing is
refused."""

from __future__ import annotations

from typing import Any

from fhir_server.access import Restriction, require_visible
from fhir_server.context import Context
from fhir_server.errors import FhirError, Issue
from fhir_server.principal import ANONYMOUS, Principal
from fhir_server.request import FhirRequest
from fhir_server.routing import Route
from smart_apps.discovery import rest_security
from smart_apps.policy import ACTION_PERMISSION, INTERACTION_PERMISSION, permits, restriction
from smart_apps.records import AuthRecords, TokenRecord

PUBLIC = ("capabilities",)


def unauthorized(message: str, error: str | None = "invalid_token") -> FhirError:
    """401 with an OperationOutcome and the RFC 6750 challenge."""
    challenge = 'Bearer realm="telefhir"'
    if error:
        challenge += f', error="{error}", error_description="{message}"'
    return FhirError(401, [Issue("error", "login", message)], {"WWW-Authenticate": challenge})


def forbidden(message: str) -> FhirError:
    """403 with an OperationOutcome (and the RFC 6750 insufficient_scope challenge)."""
    return FhirError(403, [Issue("error", "forbidden", message)],
                     {"WWW-Authenticate": 'Bearer realm="telefhir", error="insufficient_scope"'})


def principal_of(rec: TokenRecord) -> Principal:
    """The caller an access token names."""
    return Principal(
        kind="user" if rec.username else "client", client_id=rec.client_id,
        username=rec.username, fhir_user=rec.fhir_user, scopes=tuple(rec.scope.split()),
        patient=rec.patient, encounter=rec.encounter, admin=rec.admin, token_id=rec.jti)


class Enforcer:
    """The hooks of one server context."""

    def __init__(self, ctx: Context, records: AuthRecords) -> None:
        self.records = records
        self.enforcing = ctx.config.auth

    def install(self, ctx: Context) -> None:
        ctx.hooks.register("request_received", self.authenticate)
        ctx.hooks.register("authorize", self.authorize)
        ctx.hooks.register("restrict", self.restrict)
        ctx.hooks.register("before_operation", self.operation)
        ctx.hooks.register("capability_statement", self.capabilities)

    # -- who is asking ------------------------------------------------------------------------

    def authenticate(self, ctx: Context, req: FhirRequest) -> None:
        """Bearer token -> principal (one indexed lookup of the token's hash)."""
        if req.principal is not None:  # an internal client set its own
            return
        header = req.header("authorization")
        if header is None:
            if not self.enforcing:
                req.principal = ANONYMOUS
            return
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        rec = self.records.token(token) if scheme.lower() == "bearer" and token else None
        if rec is not None and rec.kind == "access" and rec.active:
            req.principal = principal_of(rec)
            return
        if not self.enforcing:
            req.principal = ANONYMOUS
            return
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("The Authorization header must be 'Bearer <access token>'",
                               "invalid_request")
        if rec is None or rec.kind != "access":
            raise unauthorized("The access token is not known to this server")
        if rec.revoked:
            raise unauthorized("The access token was revoked")
        raise unauthorized("The access token has expired")

    # -- type level ----------------------------------------------------------------------------

    def _caller(self, req: FhirRequest) -> Principal | None:
        """The principal to check, or None when nothing is to be checked."""
        if not self.enforcing:
            return None
        p = req.principal
        if p is None:
            raise unauthorized("This server needs a bearer access token "
                               "(see /.well-known/smart-configuration)", None)
        if p.kind == "internal":
            return None
        return p

    def authorize(self, ctx: Context, req: FhirRequest, route: Route) -> None:
        if route.interaction in PUBLIC:
            return
        p = self._caller(req)
        if p is None or route.interaction in ("bundle", "operation"):
            return  # entries are authorized one by one; operations by what they need
        letter = INTERACTION_PERMISSION[route.interaction]
        res_type = route.res_type
        if route.interaction == "search-compartment":
            res_type = None if route.compartment_type == "*" else route.compartment_type
        elif route.interaction in ("search-system", "history-system"):
            res_type = None
        if not permits(p, letter, res_type):
            what = res_type or "any resource type"
            raise forbidden(f"The granted scopes ({' '.join(p.scopes) or 'none'}) do not "
                            f"allow {_VERB[letter]} on {what}")

    # -- row level ------------------------------------------------------------------------------

    def restrict(self, ctx: Context, req: FhirRequest, action: str,
                 out: list[Restriction]) -> None:
        if not self.enforcing:
            return
        p = req.principal
        if p is None or p.kind in ("internal", "anonymous"):
            return
        r = restriction(p, ACTION_PERMISSION[action])
        if r is not None:
            out.append(r)

    # -- operations -------------------------------------------------------------------------------

    def operation(self, ctx: Context, req: FhirRequest, call: Any) -> None:
        """Each `Type.letters` the operation declares in `needs` (`{type}`: the type it is
        invoked on) must be granted; at instance level, the instance must be visible for each
        of r, u, d it needs."""
        p = self._caller(req)
        if p is None:
            return
        for need in call.op.needs:
            type_part, _, letters = str(need).rpartition(".")
            res_type = call.res_type if type_part == "{type}" else (type_part or None)
            if res_type == "*":
                res_type = None
            for letter in letters:
                if not permits(p, letter, res_type):
                    raise forbidden(f"${call.op.code} needs {_VERB.get(letter, letter)} on "
                                    f"{res_type or 'some resource type'}, which the granted "
                                    f"scopes do not allow")
            if call.res_id and res_type == call.res_type:
                for letter, action in (("r", "read"), ("u", "update"), ("d", "delete")):
                    if letter in letters:
                        require_visible(ctx, ctx.tx or ctx.store, action, call.res_type,
                                        call.res_id)

    # -- conformance ----------------------------------------------------------------------------

    def capabilities(self, ctx: Context, req: FhirRequest, statement: dict[str, Any]) -> None:
        """rest.security, when tokens are required (an open `--no-auth` server does not tell
        clients to authorize; its discovery document still serves apps that do)."""
        if not self.enforcing:
            return
        base = req.base_url.rstrip("/")
        root = base[: -len(ctx.config.base_path)] if base.endswith(ctx.config.base_path) \
            else base
        statement["rest"][0]["security"] = rest_security(root)


_VERB = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
