"""Opaque keyset-paging cursors (https://hl7.org/fhir/R4/http.html#paging).

A cursor carries the sort key values and pk of the row a page starts after (``n``) or ends
before (``p``), so pages do not shift while others write.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fhir_server.errors import FhirError
from resources import json_numbers


def encode_cursor(direction: str, keys: list[Any]) -> str:
    """Cursor for the page after (direction "n") or before ("p") the row with `keys`."""
    raw = json_numbers.dumps({"d": direction, "k": keys})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, n_keys: int) -> tuple[str, list[Any]]:
    """(direction, keys); a 400 when the cursor is not one of ours or does not fit the sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json_numbers.loads(raw)
        direction, keys = data["d"], data["k"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise FhirError.of(400, "invalid", "_cursor is not a valid paging cursor") from None
    if direction not in ("n", "p") or not isinstance(keys, list) or len(keys) != n_keys:
        raise FhirError.of(400, "invalid", "_cursor does not belong to this search")
    if not isinstance(keys[-1], int) or not all(_plain(k) for k in keys):
        raise FhirError.of(400, "invalid", "_cursor is not a valid paging cursor")
    return direction, keys


def _plain(key: Any) -> bool:
    """A sort key value the database can take back: text, a 64-bit integer or a float."""
    if isinstance(key, bool):
        return False
    if isinstance(key, int):
        return -(2**63) <= key < 2**63
    if isinstance(key, str):
        return "\x00" not in key
    return isinstance(key, float)
