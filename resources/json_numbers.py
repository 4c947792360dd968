"""JSON text in and out, with FHIR decimals kept as written.

R4 JSON (https://hl7.org/fhir/R4/json.html#primitive): a decimal's precision is part of its
value ("1.50" is not "1.5", https://hl7.org/fhir/R4/datatypes.html#decimal), so a server must
give back the digits it was sent. orjson (fast) parses numbers to binary floats, which drops
trailing zeros and exponents; the standard library's decoder can hand us each number's text.
`loads` takes the fast path unless the text holds a number that a float would change (trailing
fraction zeros, an exponent, more digits than a double keeps); there it keeps those numbers as
`DecimalText`, a float that remembers its digits, and `dumps` writes those digits back.
Product code uses these two instead of orjson's own `loads`/`dumps` for FHIR content."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


class DecimalText(float):
    """A JSON number (with a fraction or exponent) and the exact text it was written with."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> DecimalText:
        self = super().__new__(cls, text)
        self.text = text
        return self


# A number (after ':', '[' or ',') that a binary float would not give back as written.
_LOSSY_NUMBER = re.compile(
    rb"[:\[,]\s*-?\d+(?:\.\d+0|\.\d{16,}|(?:\.\d+)?[eE][-+]?\d+)\s*[,\]}]"
    rb"|[:\[,]\s*-?\d{16,}(?:\.\d+)?\s*[,\]}]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=DecimalText, parse_constant=_no_constant)


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON text; numbers a float would change come back as `DecimalText`.
    Raises orjson.JSONDecodeError (a ValueError) for text that is not JSON."""
    if isinstance(raw, str):
        data = raw.encode("utf-8")
    else:
        data = bytes(raw)
    if _LOSSY_NUMBER.search(data) is None:
        return orjson.loads(data)
    try:
        text = data.decode("utf-8")
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise orjson.JSONDecodeError(exc.msg, exc.doc, exc.pos) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise orjson.JSONDecodeError(str(exc), "", 0) from exc


def _default(value: Any) -> Any:
    if isinstance(value, DecimalText):
        return orjson.Fragment(value.text.encode("ascii"))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any, option: int = 0) -> bytes:
    """orjson.dumps, writing each `DecimalText` with the digits it was read with."""
    return orjson.dumps(value, default=_default, option=option)
