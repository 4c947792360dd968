"""What the server knows of R4 terminology without a terminology server: the expansions of the
core ValueSets it can enumerate, and the code system implied by each bound ``code`` element.

Both are generated from the official definitions by ``python -m resources.build_definitions``
(``data/valuesets-enumerable.json.gz``, ``data/code-systems.json``) and loaded on first use.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

import orjson

DATA_DIR = Path(__file__).resolve().parent / "data"

Expansion = Mapping[str, frozenset[str]]
"""A ValueSet's codes by code system."""


@cache
def _code_systems() -> Mapping[str, str]:
    raw = orjson.loads((DATA_DIR / "code-systems.json").read_bytes())
    return MappingProxyType(dict(raw["codeSystems"]))


def implied_system(path: str) -> str | None:
    """The code system of the values of a ``code`` element (by definition path, e.g.
    ``Patient.gender``): the one system its required binding's value set draws from, so
    ``gender=http://hl7.org/fhir/administrative-gender|male`` can match
    (https://hl7.org/fhir/R4/search.html#token); None when there is no such single system."""
    return _code_systems().get(path)


@cache
def _expansions() -> Mapping[str, Expansion]:
    raw = orjson.loads(gzip.decompress((DATA_DIR / "valuesets-enumerable.json.gz").read_bytes()))
    return MappingProxyType(
        {
            url: MappingProxyType({s: frozenset(codes) for s, codes in by_system.items()})
            for url, by_system in raw["valueSets"].items()
        }
    )


def value_set_expansion(url: str) -> Expansion | None:
    """The codes of a core ValueSet by system (a ``|version`` suffix is ignored: only the
    R4 ones are known); None when the server cannot enumerate it
    (https://hl7.org/fhir/R4/valueset.html#expansion)."""
    return _expansions().get(url.split("|", 1)[0])
