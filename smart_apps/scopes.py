"""SMART scopes as data: parsing (v2 `patient/Observation.rs?category=...` and the v1
`patient/*.read` form), narrowing what an app asks for to what it may have, and the plain
words the consent page shows. Pure functions, no I/O
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from resources.types import is_resource_type

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(
    r"(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)(?:\?(.+))?"
)
# Scopes that are not about resources (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-context-data
# and #scopes-for-requesting-identity-data)
OTHER_SCOPES = (
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
    "offline_access", "online_access",
)  # fmt: skip

PERMISSION_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class ResourceScope:
    """One clinical-data scope: context (patient | user | system), resource type (or `*`),
    permissions (letters of `cruds`) and, for granular v2 scopes, search parameters every
    resource it grants must match."""

    context: str
    res_type: str
    perms: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    v1: bool = False

    def covers(self, res_type: str) -> bool:
        """Whether the scope is about `res_type`."""
        return self.res_type in ("*", res_type)

    def allows(self, perm: str, res_type: str) -> bool:
        """Whether the scope grants permission letter `perm` on `res_type`."""
        return perm in self.perms and self.covers(res_type)


@lru_cache(maxsize=4096)
def parse_scope(text: str) -> ResourceScope | None:
    """A clinical-data scope, or None for anything else (identity, launch context, an unknown
    or malformed scope). v2 permissions must be in `cruds` order and not empty."""
    m = _RESOURCE_SCOPE.fullmatch(text)
    if m is None:
        return None
    context, res_type, perms, query = m.groups()
    if res_type != "*" and not is_resource_type(res_type):
        return None
    v1 = perms in V1_PERMISSIONS
    if v1:
        if query:
            return None  # granular queries are v2 only
        letters = V1_PERMISSIONS[perms]
    else:
        letters = perms
        if not letters:
            return None
    pairs: tuple[tuple[str, str], ...] = ()
    if query:
        pairs = tuple(parse_qsl(query, keep_blank_values=False))
        if not pairs:
            return None
    return ResourceScope(context, res_type, frozenset(letters), pairs, v1)


def split_scope(scope: str | None) -> list[str]:
    """The scope strings of a space-separated scope parameter, in order, without repeats."""
    return list(dict.fromkeys((scope or "").split()))


@lru_cache(maxsize=1024)
def resource_scopes(scopes: tuple[str, ...]) -> tuple[ResourceScope, ...]:
    """The clinical-data scopes among `scopes`, parsed."""
    return tuple(s for s in (parse_scope(x) for x in scopes) if s is not None)


def is_known(text: str) -> bool:
    """Whether the server understands the scope (it grants only those)."""
    return text in OTHER_SCOPES or parse_scope(text) is not None


def within(requested: ResourceScope, allowed: ResourceScope) -> bool:
    """Whether `requested` asks for no more than `allowed` grants (an app registered with
    `user/*.rs` may ask for `user/Observation.r`)."""
    if allowed.context != requested.context:
        return False
    if allowed.res_type != "*" and allowed.res_type != requested.res_type:
        return False
    if not requested.perms <= allowed.perms:
        return False
    # a granular allowed scope grants only the same filter (or a narrower one)
    return set(allowed.query) <= set(requested.query)


def narrow(requested: list[str], allowed: list[str] | None) -> list[str]:
    """What of `requested` the server grants: scopes it knows, and, when the app was
    registered with `allowed` scopes, clinical-data scopes within one of those (others drop)."""
    allowed_parsed = [p for p in (parse_scope(a) for a in allowed or []) if p is not None]
    allowed_other = {a for a in allowed or [] if parse_scope(a) is None}
    out: list[str] = []
    for text in requested:
        parsed = parse_scope(text)
        if parsed is None:
            if text in OTHER_SCOPES and (allowed is None or text in allowed_other
                                         or text.startswith("launch")):
                out.append(text)
            continue
        if allowed is None or any(within(parsed, a) for a in allowed_parsed):
            out.append(text)
    return out


def describe(text: str) -> str:
    """The scope in plain words, for the consent page."""
    fixed = {
        "openid": "Know who you are (your sign-in identity)",
        "fhirUser": "Know which record is yours (your Practitioner or Patient resource)",
        "profile": "Know your name and profile",
        "launch": "Open with the patient (and encounter) chosen in the EHR",
        "launch/patient": "Ask which patient to open",
        "launch/encounter": "Ask which encounter to open",
        "offline_access": "Keep access when you are not using it (until you revoke it)",
        "online_access": "Keep access while you are signed in",
    }
    if text in fixed:
        return fixed[text]
    parsed = parse_scope(text)
    if parsed is None:
        return f"Unknown permission '{text}' (not granted)"
    verbs = [PERMISSION_WORDS[p] for p in PERMISSIONS if p in parsed.perms]
    what = "all kinds of records" if parsed.res_type == "*" else f"{parsed.res_type} records"
    whose = {
        "patient": "of the selected patient",
        "user": "that you can access",
        "system": "of every patient (system access)",
    }[parsed.context]
    words = f"{_join(verbs).capitalize()} {what} {whose}"
    if parsed.query:
        words += " where " + " and ".join(f"{k} is {v}" for k, v in parsed.query)
    return words


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
