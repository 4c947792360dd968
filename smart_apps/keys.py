"""The authorization server's signing keys (RS256, for id_tokens), kept in the store so every
process and node signs with the same key and publishes the same JWKS
(https://hl7.org/fhir/smart-app-launch/app-launch.html#id-token,
https://datatracker.ietf.org/doc/html/rfc7517). `telefhir keys rotate` adds a new key; the
previous one stays in the JWKS until every token signed with it has expired."""

from __future__ import annotations

import json
import threading
from typing import Any

from joserfc.jwk import RSAKey

from smart_apps.records import AuthRecords, now_us

ALG = "RS256"


def new_key() -> RSAKey:
    """A fresh 2048-bit RSA signing key with a thumbprint kid."""
    return RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig"}, private=True,
                               auto_kid=True)


def rotate(records: AuthRecords) -> str:
    """Make a new active key (the others are retired, still published); returns its kid."""
    key = new_key()
    records.add_key(str(key.kid), json.dumps(key.as_dict(private=True)),
                    json.dumps(key.as_dict(private=False)), retire_others=True)
    return str(key.kid)


class SigningKeys:
    """The active key and the published key set, read from the store (parsed keys cached by
    kid; which key is active is read on each use, so a rotation is seen at once)."""

    def __init__(self, records: AuthRecords, keep_retired_seconds: int) -> None:
        self.records = records
        self.keep_us = keep_retired_seconds * 1_000_000
        self._parsed: dict[str, RSAKey] = {}
        self._lock = threading.Lock()

    def _rows(self) -> list[tuple[str, str, str, int, int | None]]:
        rows = self.records.keys()
        if not any(r[4] is None for r in rows):
            key = new_key()
            self.records.add_key(str(key.kid), json.dumps(key.as_dict(private=True)),
                                 json.dumps(key.as_dict(private=False)), retire_others=False)
            rows = self.records.keys()
        return rows

    def active(self) -> RSAKey:
        """The key new tokens are signed with."""
        kid, private, _pub, _created, _retired = next(r for r in self._rows() if r[4] is None)
        with self._lock:
            key = self._parsed.get(kid)
            if key is None:
                key = self._parsed[kid] = RSAKey.import_key(json.loads(private))
        return key

    def jwks(self) -> dict[str, Any]:
        """The public keys of the active key and of keys retired less than a token lifetime
        ago (https://datatracker.ietf.org/doc/html/rfc7517#section-5)."""
        cut = now_us() - self.keep_us
        keys = [json.loads(pub) for _kid, _priv, pub, _c, retired in self._rows()
                if retired is None or retired > cut]
        return {"keys": keys}
