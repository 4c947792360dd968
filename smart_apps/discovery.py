"""What the authorization server announces: `.well-known/smart-configuration`
(https://hl7.org/fhir/smart-app-launch/conformance.html), the OpenID Connect discovery document
(https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata) and the
CapabilityStatement's `rest.security` (https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.security)."""

from __future__ import annotations

from typing import Any

CAPABILITIES = (
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "authorize-post", "sso-openid-connect",
    "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
    "context-standalone-patient", "permission-offline", "permission-online",
    "permission-patient", "permission-user", "permission-v1", "permission-v2",
)  # fmt: skip

SCOPES_SUPPORTED = (
    "openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access",
    "online_access", "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.rs",
    "user/*.rs", "system/*.rs", "patient/*.read", "user/*.read", "system/*.read",
    "patient/*.write", "user/*.write", "system/*.write", "patient/*.*", "user/*.*",
    "system/*.*",
)  # fmt: skip

TOKEN_AUTH_METHODS = ("client_secret_basic", "private_key_jwt")
ASSERTION_ALGS = ("RS384", "ES384")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def endpoints(auth_base: str) -> dict[str, str]:
    """The endpoint URLs under the server's root URL (no trailing slash)."""
    return {
        "authorization_endpoint": f"{auth_base}/auth/authorize",
        "token_endpoint": f"{auth_base}/auth/token",
        "introspection_endpoint": f"{auth_base}/auth/introspect",
        "revocation_endpoint": f"{auth_base}/auth/revoke",
        "jwks_uri": f"{auth_base}/auth/jwks.json",
    }


def smart_configuration(fhir_base: str, auth_base: str) -> dict[str, Any]:
    """The SMART configuration document (issuer: the FHIR base URL, which is also the
    id_token `iss`)."""
    return {
        "issuer": fhir_base,
        **endpoints(auth_base),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "id_token_signing_alg_values_supported": ["RS256"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(fhir_base: str, auth_base: str) -> dict[str, Any]:
    """The OpenID Connect provider metadata at `[issuer]/.well-known/openid-configuration`."""
    e = endpoints(auth_base)
    return {
        "issuer": fhir_base,
        "authorization_endpoint": e["authorization_endpoint"],
        "token_endpoint": e["token_endpoint"],
        "jwks_uri": e["jwks_uri"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
                             "fhirUser", "preferred_username"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS) + ["none"],
        "code_challenge_methods_supported": ["S256"],
    }


def rest_security(auth_base: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART-on-FHIR with the oauth-uris extension
    (https://hl7.org/fhir/smart-app-launch/conformance.html#using-cs)."""
    e = endpoints(auth_base)
    return {
        "cors": True,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
                "display": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "extension": [{
            "url": OAUTH_URIS,
            "extension": [
                {"url": "authorize", "valueUri": e["authorization_endpoint"]},
                {"url": "token", "valueUri": e["token_endpoint"]},
                {"url": "introspect", "valueUri": e["introspection_endpoint"]},
                {"url": "revoke", "valueUri": e["revocation_endpoint"]},
            ],
        }],
        "description": "SMART App Launch 2.2 (and v1 scopes): bearer tokens from the "
                       "authorization server above; /metadata and the discovery documents "
                       "are public.",
    }


SMART_STYLE = {
    "color_background": "#f4f6f8",
    "color_error": "#b3261e",
    "color_highlight": "#1f6f8b",
    "color_modal_backdrop": "#00000066",
    "color_success": "#2e7d32",
    "color_text": "#1b1f23",
    "dim_border_radius": "6px",
    "dim_font_size": "14px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, -apple-system, 'Segoe UI', sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', sans-serif",
}
"""The styling apps launched with `smart_style_url` may follow
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#styling)."""
