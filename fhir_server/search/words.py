"""Words for ``_text`` (the narrative) and ``_content`` (every string of the resource)
(https://hl7.org/fhir/R4/search.html#text, https://hl7.org/fhir/R4/search.html#content).

Both are indexed at write time as idx_string rows, one per distinct word of the first
MAX_CHARS characters of normalised text, so a search is one index probe per word. A word is a
run of letters, digits and ``_`` that starts with a letter and has at least MIN_WORD characters,
normalised like string search values (lower case, accents removed). A search value matches
when each of its words is a word of the resource or the start of one ("contains words").
"""

from __future__ import annotations

import html
import re
from typing import Any

from fhir_server.search.normalize import fold
from fhir_server.search.schema import MAX_TEXT

MAX_CHARS = 4096  # normalised characters indexed per resource and parameter
MIN_WORD = 2
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"\w+")
# ASCII letters, digits and _ kept, every other byte a space (what \w+ finds in ASCII text)
_ASCII_SEPARATE = bytes(c if chr(c).isalnum() or c == 0x5F else 0x20 for c in range(128)) + bytes(
    [0x20] * 128
)
# JSON properties whose strings are identifiers, links or binary, not words
_NOT_TEXT = frozenset(
    {"resourceType", "id", "reference", "system", "url", "fullUrl", "div", "data", "version",
     "versionId", "profile", "source", "contentType", "language"}
)  # fmt: skip
_NOT_TEXT_STRING = _NOT_TEXT | {"code"}  # codes are for token search; their displays are words


def words(text: str) -> list[str]:
    """The distinct words of normalised `text`, in order of first occurrence."""
    if text.isascii():  # the common case: byte translation beats the regular expression
        tokens = text.encode().translate(_ASCII_SEPARATE).decode().split()
    else:
        tokens = _WORD.findall(text)
    return [w[:MAX_TEXT] for w in dict.fromkeys(tokens) if len(w) >= MIN_WORD and w[0].isalpha()]


def narrative_text(resource: dict[str, Any]) -> str:
    """The text of the narrative (``text.div`` without its markup), normalised and clipped."""
    narrative = resource.get("text")
    div = narrative.get("div") if isinstance(narrative, dict) else None
    if not isinstance(div, str):
        return ""
    text = " ".join(html.unescape(_TAG.sub(" ", div[: MAX_CHARS * 4])).split())
    return fold(text)[:MAX_CHARS]


def narrative_words(resource: dict[str, Any]) -> list[str]:
    """Words of the narrative, for ``_text``."""
    text = narrative_text(resource)
    return words(text) if text else []


def _collect(node: dict[str, Any], parts: list[str], budget: int) -> int:
    """Append the strings below object `node` to `parts` in document order until `budget`
    characters are taken; return the budget left (a hot path of every write: kept flat)."""
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            # value[:4].isdigit(): a date or time, no words
            if key not in _NOT_TEXT_STRING and not value[:4].isdigit():
                parts.append(value)
                budget -= len(value) + 1
        elif kind is list:
            if key not in _NOT_TEXT:
                budget = _collect_list(value, parts, budget)
        elif kind is dict and key != "text" and key not in _NOT_TEXT:  # text: the Narrative
            budget = _collect(value, parts, budget)
        if budget <= 0:
            break
    return budget


def _collect_list(items: list[Any], parts: list[str], budget: int) -> int:
    for value in items:
        kind = type(value)
        if kind is dict:
            budget = _collect(value, parts, budget)
        elif kind is str:
            parts.append(value)
            budget -= len(value) + 1
        if budget <= 0:
            break
    return budget


def content_words(resource: dict[str, Any]) -> list[str]:
    """Words of the narrative and of every string value of the resource, for ``_content``
    (ids, codes, systems, URLs, references and dates left out)."""
    narrative = narrative_text(resource)
    parts = [narrative] if narrative else []
    _collect(resource, parts, MAX_CHARS - len(narrative))
    return words(fold(" ".join(parts))[:MAX_CHARS])


def query_words(text: str) -> list[str]:
    """The words of a ``_text``/``_content`` search value."""
    return words(fold(text))
