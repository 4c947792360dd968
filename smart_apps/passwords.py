"""Password hashing with Argon2id (argon2-cffi, https://datatracker.ietf.org/doc/html/rfc9106):
never stored, never compared in the clear. Parameters are OWASP's minimum for Argon2id (19 MiB,
2 passes, 1 lane: https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html),
which keeps a sign-in to tens of milliseconds on a small server."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# a hash of nothing, verified when the user does not exist, so both cases take the same time
_DUMMY = _HASHER.hash("telefhir: no such user")


def hash_password(password: str) -> str:
    """The stored form of `password`."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (None: an unknown user, checked against a dummy
    hash so that timing does not tell which usernames exist)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with older parameters than the current ones."""
    return _HASHER.check_needs_rehash(stored)
