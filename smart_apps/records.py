"""The authorization server's own tables in the store (fhir_server.store.base.ensure_tables):
apps, users, signing keys, launch contexts, authorization codes, tokens, used assertion ids
and failed attempts. Every server process and node on one database sees the same rows.

Secrets are stored only as hashes: client secrets, codes, launch ids and tokens as SHA-256
(they are long random strings, https://datatracker.ietf.org/doc/html/rfc6819#section-5.1.4.1.3),
passwords with Argon2 (smart_apps.passwords)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.store.base import ResourceStore


def now_us() -> int:
    """Microseconds since the epoch."""
    return int(time.time() * 1_000_000)


def digest(secret: str) -> str:
    """The stored form of a high-entropy secret (token, code, client secret, launch id)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret."""
    return secrets.token_urlsafe(nbytes)


def new_client_id() -> str:
    """A random client id: hex, so it never starts with '-' (it is typed into commands such as
    `telefhir apps launch CLIENT_ID`) and needs no escaping anywhere."""
    return secrets.token_hex(16)


DDL = (
    """CREATE TABLE IF NOT EXISTS smart_clients (
        client_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT,
        auth_method TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        launch_url TEXT,
        jwks TEXT,
        jwks_url TEXT,
        backend INTEGER NOT NULL,
        scopes TEXT,
        created_us BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS smart_users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        fhir_user TEXT NOT NULL,
        admin INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        locked_until_us BIGINT NOT NULL,
        created_us BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS smart_keys (
        kid TEXT PRIMARY KEY,
        private_jwk TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        created_us BIGINT NOT NULL,
        retired_us BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS smart_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS smart_launches (
        launch_hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        username TEXT NOT NULL,
        patient TEXT,
        encounter TEXT,
        expires_us BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS smart_codes (
        code_hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        username TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scope TEXT NOT NULL,
        nonce TEXT,
        code_challenge TEXT,
        code_challenge_method TEXT,
        patient TEXT,
        encounter TEXT,
        auth_time BIGINT NOT NULL,
        expires_us BIGINT NOT NULL,
        used INTEGER NOT NULL,
        family TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS smart_tokens (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        family TEXT NOT NULL,
        client_id TEXT NOT NULL,
        username TEXT,
        fhir_user TEXT,
        scope TEXT NOT NULL,
        patient TEXT,
        encounter TEXT,
        admin INTEGER NOT NULL,
        issued_us BIGINT NOT NULL,
        expires_us BIGINT NOT NULL,
        revoked INTEGER NOT NULL,
        used INTEGER NOT NULL,
        jti TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS smart_tokens_family ON smart_tokens (family)",
    "CREATE INDEX IF NOT EXISTS smart_tokens_expires ON smart_tokens (expires_us)",
    """CREATE TABLE IF NOT EXISTS smart_assertions (
        client_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_us BIGINT NOT NULL,
        PRIMARY KEY (client_id, jti)
    )""",
    """CREATE TABLE IF NOT EXISTS smart_failures (
        address TEXT NOT NULL,
        at_us BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS smart_failures_address ON smart_failures (address, at_us)",
)


@dataclass(frozen=True)
class ClientRecord:
    """A registered app."""

    client_id: str
    name: str
    secret_hash: str | None
    auth_method: str  # none | client_secret_basic | private_key_jwt
    redirect_uris: tuple[str, ...]
    launch_url: str | None
    jwks: dict[str, Any] | None
    jwks_url: str | None
    backend: bool
    scopes: tuple[str, ...] | None  # the scopes it may be granted; None: any

    def summary(self) -> dict[str, Any]:
        """What `telefhir apps list` prints (no secret)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "token_endpoint_auth_method": self.auth_method,
            "redirect_uris": list(self.redirect_uris),
            "launch_url": self.launch_url,
            "jwks_url": self.jwks_url,
            "jwks": self.jwks is not None,
            "backend": self.backend,
            "scope": " ".join(self.scopes) if self.scopes is not None else None,
        }


@dataclass(frozen=True)
class UserRecord:
    """A person who signs in."""

    username: str
    password_hash: str
    fhir_user: str
    admin: bool
    failures: int
    locked_until_us: int


@dataclass(frozen=True)
class TokenRecord:
    """An issued access or refresh token."""

    token_hash: str
    kind: str  # access | refresh
    family: str  # every token descending from one authorization
    client_id: str
    username: str | None
    fhir_user: str | None
    scope: str
    patient: str | None
    encounter: str | None
    admin: bool
    issued_us: int
    expires_us: int
    revoked: bool
    used: bool
    jti: str

    @property
    def active(self) -> bool:
        return not self.revoked and self.expires_us > now_us() and not (
            self.kind == "refresh" and self.used)


@dataclass(frozen=True)
class CodeRecord:
    """An authorization code, claimed once at the token endpoint."""

    code_hash: str
    client_id: str
    username: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    patient: str | None
    encounter: str | None
    auth_time: int
    expires_us: int
    used: bool
    family: str


@dataclass(frozen=True)
class LaunchRecord:
    """An EHR launch context: who launched which app for which patient and encounter."""

    client_id: str
    username: str
    patient: str | None
    encounter: str | None
    expires_us: int


_TOKEN_COLS = ("token_hash, kind, family, client_id, username, fhir_user, scope, patient, "
               "encounter, admin, issued_us, expires_us, revoked, used, jti")
_CODE_COLS = ("code_hash, client_id, username, redirect_uri, scope, nonce, code_challenge, "
              "code_challenge_method, patient, encounter, auth_time, expires_us, used, family")
_CLIENT_COLS = ("client_id, name, secret_hash, auth_method, redirect_uris, launch_url, jwks, "
                "jwks_url, backend, scopes")


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), row[4], row[5],
                       str(row[6]), row[7], row[8], bool(row[9]), int(row[10]), int(row[11]),
                       bool(row[12]), bool(row[13]), str(row[14]))


def _code(row: Sequence[Any]) -> CodeRecord:
    return CodeRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), row[5],
                      row[6], row[7], row[8], row[9], int(row[10]), int(row[11]),
                      bool(row[12]), str(row[13]))


def _client(row: Sequence[Any]) -> ClientRecord:
    return ClientRecord(
        str(row[0]), str(row[1]), row[2], str(row[3]), tuple(json.loads(row[4])), row[5],
        json.loads(row[6]) if row[6] else None, row[7], bool(row[8]),
        tuple(row[9].split()) if row[9] is not None else None,
    )


class AuthRecords:
    """Reads and writes the authorization server's tables through the store interface."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        store.ensure_tables(DDL)

    def _write(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.store.transaction() as tx:
            return tx.query(sql, args)

    # -- apps --------------------------------------------------------------------------------

    def add_client(self, c: ClientRecord) -> None:
        self._write(
            f"INSERT INTO smart_clients ({_CLIENT_COLS}, created_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.client_id, c.name, c.secret_hash, c.auth_method, json.dumps(c.redirect_uris),
             c.launch_url, json.dumps(c.jwks) if c.jwks else None, c.jwks_url,
             int(c.backend), " ".join(c.scopes) if c.scopes is not None else None, now_us()),
        )

    def client(self, client_id: str) -> ClientRecord | None:
        rows = self.store.query(f"SELECT {_CLIENT_COLS} FROM smart_clients WHERE client_id = ?",
                                (client_id,))
        return _client(rows[0]) if rows else None

    def clients(self) -> list[ClientRecord]:
        rows = self.store.query(f"SELECT {_CLIENT_COLS} FROM smart_clients ORDER BY created_us")
        return [_client(r) for r in rows]

    def remove_client(self, client_id: str) -> bool:
        """Remove an app and revoke every token it holds."""
        with self.store.transaction() as tx:
            gone = tx.query("DELETE FROM smart_clients WHERE client_id = ? RETURNING client_id",
                            (client_id,))
            tx.query("UPDATE smart_tokens SET revoked = 1 WHERE client_id = ?", (client_id,))
            tx.query("DELETE FROM smart_codes WHERE client_id = ?", (client_id,))
        return bool(gone)

    # -- users -------------------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, fhir_user: str, admin: bool) -> None:
        """Add a user, or replace the password, fhirUser and admin flag of an existing one."""
        self._write(
            "INSERT INTO smart_users (username, password_hash, fhir_user, admin, failures, "
            "locked_until_us, created_us) VALUES (?, ?, ?, ?, 0, 0, ?) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, "
            "fhir_user = excluded.fhir_user, admin = excluded.admin, failures = 0, "
            "locked_until_us = 0",
            (username, password_hash, fhir_user, int(admin), now_us()),
        )

    def user(self, username: str) -> UserRecord | None:
        rows = self.store.query(
            "SELECT username, password_hash, fhir_user, admin, failures, locked_until_us "
            "FROM smart_users WHERE username = ?", (username,))
        if not rows:
            return None
        r = rows[0]
        return UserRecord(str(r[0]), str(r[1]), str(r[2]), bool(r[3]), int(r[4]), int(r[5]))

    def users(self) -> list[UserRecord]:
        rows = self.store.query("SELECT username FROM smart_users ORDER BY username")
        return [u for u in (self.user(str(r[0])) for r in rows) if u is not None]

    def record_login(self, username: str, ok: bool, max_failures: int, lockout_us: int) -> bool:
        """Count a sign-in attempt; returns True when this failure locked the user out."""
        if ok:
            self._write("UPDATE smart_users SET failures = 0 WHERE username = ?", (username,))
            return False
        rows = self._write(
            "UPDATE smart_users SET failures = failures + 1 WHERE username = ? "
            "RETURNING failures", (username,))
        if rows and int(rows[0][0]) >= max_failures:
            self._write("UPDATE smart_users SET locked_until_us = ?, failures = 0 "
                        "WHERE username = ?", (now_us() + lockout_us, username))
            return True
        return False

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self._write("UPDATE smart_users SET password_hash = ? WHERE username = ?",
                    (password_hash, username))

    # -- rate limit --------------------------------------------------------------------------

    def failures_since(self, address: str, since_us: int) -> int:
        rows = self.store.query(
            "SELECT COUNT(*) FROM smart_failures WHERE address = ? AND at_us > ?",
            (address, since_us))
        return int(rows[0][0])

    def record_failure(self, address: str) -> None:
        t = now_us()
        with self.store.transaction() as tx:
            tx.query("INSERT INTO smart_failures (address, at_us) VALUES (?, ?)", (address, t))
            tx.query("DELETE FROM smart_failures WHERE at_us < ?", (t - 3_600_000_000,))

    # -- keys and secrets --------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str, str, int, int | None]]:
        """(kid, private JWK, public JWK, created, retired) newest first."""
        rows = self.store.query("SELECT kid, private_jwk, public_jwk, created_us, retired_us "
                                "FROM smart_keys ORDER BY created_us DESC, kid")
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]),
                 int(r[4]) if r[4] is not None else None) for r in rows]

    def add_key(self, kid: str, private_jwk: str, public_jwk: str, retire_others: bool) -> None:
        t = now_us()
        with self.store.transaction() as tx:
            tx.lock("smart_keys")
            if not retire_others and tx.query(
                    "SELECT 1 FROM smart_keys WHERE retired_us IS NULL"):
                return  # another process made the first key meanwhile
            if retire_others:
                tx.query("UPDATE smart_keys SET retired_us = ? WHERE retired_us IS NULL", (t,))
            tx.query("INSERT INTO smart_keys (kid, private_jwk, public_jwk, created_us) "
                     "VALUES (?, ?, ?, ?)", (kid, private_jwk, public_jwk, t))

    def secret(self, name: str) -> str:
        """A server-wide random secret by name (made on first use, shared by every process)."""
        rows = self.store.query("SELECT value FROM smart_secrets WHERE name = ?", (name,))
        if rows:
            return str(rows[0][0])
        self._write("INSERT INTO smart_secrets (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING", (name, new_secret(48)))
        return str(self.store.query("SELECT value FROM smart_secrets WHERE name = ?",
                                    (name,))[0][0])

    # -- launch contexts ---------------------------------------------------------------------

    def add_launch(self, launch: str, rec: LaunchRecord) -> None:
        self._write(
            "INSERT INTO smart_launches (launch_hash, client_id, username, patient, encounter, "
            "expires_us) VALUES (?, ?, ?, ?, ?, ?)",
            (digest(launch), rec.client_id, rec.username, rec.patient, rec.encounter,
             rec.expires_us))

    def launch(self, launch: str) -> LaunchRecord | None:
        rows = self.store.query(
            "SELECT client_id, username, patient, encounter, expires_us FROM smart_launches "
            "WHERE launch_hash = ?", (digest(launch),))
        if not rows:
            return None
        r = rows[0]
        rec = LaunchRecord(str(r[0]), str(r[1]), r[2], r[3], int(r[4]))
        return rec if rec.expires_us > now_us() else None

    # -- codes -------------------------------------------------------------------------------

    def add_code(self, code: str, rec: CodeRecord) -> None:
        self._write(
            f"INSERT INTO smart_codes ({_CODE_COLS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (digest(code), rec.client_id, rec.username, rec.redirect_uri, rec.scope, rec.nonce,
             rec.code_challenge, rec.code_challenge_method, rec.patient, rec.encounter,
             rec.auth_time, rec.expires_us, rec.family))

    def claim_code(self, code: str, client_id: str) -> tuple[CodeRecord | None, CodeRecord | None]:
        """(the code, now claimed; None if unknown, expired or used) and, when it had been
        used before, that record (RFC 6749 section 4.1.2: the tokens it gave are revoked)."""
        h = digest(code)
        rows = self._write(
            f"UPDATE smart_codes SET used = 1 WHERE code_hash = ? AND client_id = ? AND used = 0 "
            f"AND expires_us > ? RETURNING {_CODE_COLS}", (h, client_id, now_us()))
        if rows:
            return _code(rows[0]), None
        old = self.store.query(f"SELECT {_CODE_COLS} FROM smart_codes WHERE code_hash = ? "
                               "AND client_id = ? AND used = 1", (h, client_id))
        return None, _code(old[0]) if old else None

    def code_nonce_exists(self, client_id: str, nonce: str) -> bool:
        return bool(self.store.query(
            "SELECT 1 FROM smart_codes WHERE client_id = ? AND nonce = ?", (client_id, nonce)))

    # -- tokens ------------------------------------------------------------------------------

    def add_tokens(self, records: Sequence[TokenRecord],
                   assertion: tuple[str, str, int] | None = None) -> bool:
        """Store tokens, with the client assertion (client_id, jti, expiry) that paid for
        them in the same transaction; False (nothing stored) if that assertion was used."""
        with self.store.transaction() as tx:
            if assertion is not None and not tx.query(
                    "INSERT INTO smart_assertions (client_id, jti, expires_us) VALUES (?, ?, ?) "
                    "ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti", assertion):
                return False
            for t in records:
                tx.query(
                    f"INSERT INTO smart_tokens ({_TOKEN_COLS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                    (t.token_hash, t.kind, t.family, t.client_id, t.username, t.fhir_user,
                     t.scope, t.patient, t.encounter, int(t.admin), t.issued_us, t.expires_us,
                     t.jti))
        return True

    def token(self, token: str) -> TokenRecord | None:
        rows = self.store.query(f"SELECT {_TOKEN_COLS} FROM smart_tokens WHERE token_hash = ?",
                                (digest(token),))
        return _token(rows[0]) if rows else None

    def claim_refresh(self, token_hash: str) -> bool:
        """Mark a refresh token used (rotation); False if someone used it first."""
        rows = self._write(
            "UPDATE smart_tokens SET used = 1 WHERE token_hash = ? AND kind = 'refresh' "
            "AND used = 0 AND revoked = 0 RETURNING token_hash", (token_hash,))
        return bool(rows)

    def revoke(self, token_hash: str) -> None:
        self._write("UPDATE smart_tokens SET revoked = 1 WHERE token_hash = ?", (token_hash,))

    def revoke_family(self, family: str) -> int:
        rows = self._write("UPDATE smart_tokens SET revoked = 1 WHERE family = ? AND "
                           "revoked = 0 RETURNING token_hash", (family,))
        return len(rows)

    def purge_expired(self) -> None:
        """Drop tokens, codes, launches and assertion ids that expired a day ago."""
        cut = now_us() - 86_400_000_000
        with self.store.transaction() as tx:
            tx.query("DELETE FROM smart_tokens WHERE expires_us < ?", (cut,))
            tx.query("DELETE FROM smart_codes WHERE expires_us < ?", (cut,))
            tx.query("DELETE FROM smart_launches WHERE expires_us < ?", (cut,))
            tx.query("DELETE FROM smart_assertions WHERE expires_us < ?", (cut,))

    # -- client assertions -------------------------------------------------------------------

    def assertion_seen(self, client_id: str, jti: str) -> bool:
        return bool(self.store.query(
            "SELECT 1 FROM smart_assertions WHERE client_id = ? AND jti = ?", (client_id, jti)))

    def use_assertion(self, client_id: str, jti: str, expires_us: int) -> bool:
        """Record a client assertion's jti; False if it was seen before (a replay)."""
        rows = self._write(
            "INSERT INTO smart_assertions (client_id, jti, expires_us) VALUES (?, ?, ?) "
            "ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti",
            (client_id, jti, expires_us))
        return bool(rows)
