"""Typed search requests: what `parse` produces and `query` turns into SQL
(https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from fhir_server.errors import Issue
from resources.search_parameters import SearchParameter

if TYPE_CHECKING:
    from fhir_server.access import Restriction

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# the types that take PREFIXES (https://hl7.org/fhir/R4/search.html#prefix)
PREFIXED_TYPES = frozenset({"number", "date", "quantity"})


@dataclass(frozen=True)
class StringValue:
    norm: str
    exact: str


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code (``system|``)


@dataclass(frozen=True)
class TextValue:
    """A :text token search: normalised text."""

    norm: str


@dataclass(frozen=True)
class DateValue:
    prefix: str
    low: int  # inclusive epoch microseconds
    high: int


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: float
    low: float  # precision range [low, high)
    high: float


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    number: NumberValue
    system: str | None
    code: str | None
    canon_code: str | None = None
    canon: NumberValue | None = None


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None
    id: str | None
    url: str | None  # absolute / canonical URL to match instead of type+id


@dataclass(frozen=True)
class IdentifierValue:
    """:identifier on a reference, or :of-type on a token."""

    system: str | None
    value: str
    type_system: str | None = None  # :of-type only
    type_code: str | None = None


@dataclass(frozen=True)
class UriValue:
    uri: str


@dataclass(frozen=True)
class CompositeValue:
    parts: tuple[Value, ...]


@dataclass(frozen=True)
class ValueSetValue:
    """A token ``:in``/``:not-in`` value: the codes of a value set the server can enumerate
    (https://hl7.org/fhir/R4/search.html#token)."""

    url: str
    codes: tuple[tuple[str, tuple[str, ...]], ...]  # (system, its codes), sorted


@dataclass(frozen=True)
class WordsValue:
    """A ``_text``/``_content`` value: each word must be a word of the resource or the start
    of one (fhir_server.search.words)."""

    words: tuple[str, ...]


Value = Union[  # noqa: UP007 (a runtime alias)
    StringValue,
    TokenValue,
    TextValue,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    IdentifierValue,
    UriValue,
    CompositeValue,
    ValueSetValue,
    WordsValue,
]


@dataclass(frozen=True)
class Clause:
    """``code[:modifier]=v1,v2``: any value matches (OR). `missing` set for :missing."""

    code: str
    param: SearchParameter
    modifier: str | None
    values: tuple[Value, ...]
    missing: bool | None = None
    components: tuple[SearchParameter, ...] = ()  # composites: the component parameters


@dataclass(frozen=True)
class Chain:
    """``ref[:Type].inner=...`` (https://hl7.org/fhir/R4/search.html#chaining)."""

    code: str
    param: SearchParameter
    targets: tuple[tuple[str, Criterion], ...]  # per target type, the criterion on it


@dataclass(frozen=True)
class Has:
    """``_has:Type:ref:inner=...`` (https://hl7.org/fhir/R4/search.html#has)."""

    source_type: str
    ref_code: str
    inner: Criterion


@dataclass(frozen=True)
class InList:
    """``_list=id1,id2``: the resources the ``entry.item`` of List/id1 or List/id2 refer to
    (https://hl7.org/fhir/R4/search.html#list)."""

    list_ids: tuple[str, ...]


Criterion = Union[Clause, Chain, Has, InList]  # noqa: UP007


@dataclass(frozen=True)
class SortKey:
    code: str
    param: SearchParameter | None  # None for _id / _lastUpdated
    desc: bool


@dataclass(frozen=True)
class Include:
    """``_include`` / ``_revinclude`` = source_type:param[:target_type]."""

    source_type: str
    param: str  # "*" for every reference parameter
    target_type: str | None
    iterate: bool
    reverse: bool


ANY_COMPARTMENT_ID = "*"
"""As the id of SearchRequest.compartment: members of any compartment of that type (never a
valid id: https://hl7.org/fhir/R4/datatypes.html#id), as type-level `Patient/$everything` asks."""


@dataclass
class SearchRequest:
    """A parsed search (https://hl7.org/fhir/R4/search.html)."""

    types: tuple[str, ...]  # searched types; empty: every type (system search without _type)
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 50
    total: str | None = None  # none | estimate | accurate
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None  # true | text | data | count | false
    elements: tuple[str, ...] = ()
    cursor: str | None = None
    compartment: tuple[str, str] | None = None
    compartment_self: bool = False  # the compartment's own resource matches too ($everything)
    applied: list[tuple[str, str]] = field(default_factory=list)  # for the self link
    warnings: list[Issue] = field(default_factory=list)
    # fhir_server.access: what the caller may see, applied in SQL to the matches, the total,
    # chain targets and _has sources (restriction) and to included resources (include_...)
    restriction: tuple[Restriction, ...] = ()
    include_restriction: tuple[Restriction, ...] = ()
