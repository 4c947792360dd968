"""Parse search query parameters into a SearchRequest (https://hl7.org/fhir/R4/search.html).

Lenient by default: unknown parameters are ignored and reported as warnings; with
``Prefer: handling=strict`` (https://hl7.org/fhir/R4/search.html#errors) they are a 400.
Bad values, unknown modifiers and malformed result parameters are always a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fhir_server.errors import FhirError, Issue
from fhir_server.search import values_parse as P
from fhir_server.search.include import include_params
from fhir_server.search.indexer import RESOURCE_COLUMN_PARAMS, WORD_PARAMS
from fhir_server.search.model import (
    Chain,
    Clause,
    Criterion,
    Has,
    Include,
    InList,
    SearchRequest,
    SortKey,
    Value,
)
from resources.search_parameters import (
    SearchParameter,
    common_search_params,
    search_param_by_url,
    search_params_for,
)

DEFAULT_COUNT = 50
MAX_COUNT = 1000
MAX_CHAIN_DEPTH = 4

# Modifiers implemented per parameter type; others valid in R4 get "not supported".
SUPPORTED_MODIFIERS: Mapping[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains"}),
    "token": frozenset({"missing", "text", "not", "of-type", "in", "not-in"}),
    "reference": frozenset({"missing", "identifier"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"missing", "below", "above"}),
    "composite": frozenset({"missing"}),
    "special": frozenset(),
}


def modifiers_for(sp: SearchParameter) -> frozenset[str]:
    """The modifiers the engine answers on parameter `sp` (besides `:[type]` on references):
    its type's, except that the word parameters (`_text`, `_content`) take only `:missing`
    and `_id` is not expanded through value sets (https://hl7.org/fhir/R4/search.html#modifiers).
    The parser and the CapabilityStatement both read this."""
    if sp.code in WORD_PARAMS:
        return frozenset({"missing"})
    if sp.code == "_id":
        return SUPPORTED_MODIFIERS[sp.type] - {"in", "not-in"}
    return SUPPORTED_MODIFIERS[sp.type]


SUMMARY_VALUES = ("true", "false", "text", "data", "count")
TOTAL_VALUES = ("none", "estimate", "accurate")
IGNORED = frozenset({"_format", "_pretty", "_cursor"})
# Common parameters with no R4 SearchParameter resource, answered by the parser itself on
# every type (https://hl7.org/fhir/R4/search.html#list, #has); the CapabilityStatement lists them.
ENGINE_PARAMS: Mapping[str, str] = {
    "_list": "Resources that List/[id] holds in entry.item (`_list=id`, several ids "
             "separated by ','); functional lists such as `$current-allergies` are not supported.",
    "_has": "Reverse chaining: `_has:[type]:[reference parameter]:[parameter]=value`, "
            "nested `_has` allowed.",
}
UNSUPPORTED = frozenset({"_query", "_filter", "_containedType"})
LIST_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # https://hl7.org/fhir/R4/datatypes.html#id
RESULT_PARAMS = (
    "_count", "_sort", "_total", "_include", "_revinclude", "_summary", "_elements", "_contained",
)  # fmt: skip


def is_supported(sp: SearchParameter) -> bool:
    """Whether the engine answers searches on `sp` (the others are ignored, or a 400 under
    ``Prefer: handling=strict``; https://hl7.org/fhir/R4/search.html#errors): parameters
    without a FHIRPath expression (`_text`, `_content`, `_query`) and `special` ones (`near`)
    are not indexed."""
    if sp.code in UNSUPPORTED:
        return False
    if sp.code in RESOURCE_COLUMN_PARAMS:  # answered from the resources table
        return True
    if sp.code in WORD_PARAMS:  # _text, _content: indexed as words (search.words)
        return True
    if sp.type == "special" or not sp.expression:
        return False
    if sp.type == "composite":
        return bool(sp.components) and all(
            search_param_by_url(url) is not None for url, _ in sp.components
        )
    return True


def bad_request(
    diagnostics: str, code: str = "invalid", expression: str | None = None
) -> FhirError:
    """A 400 with one error issue."""
    return FhirError.of(400, code, diagnostics, expression)


def params_for(types: tuple[str, ...]) -> Mapping[str, SearchParameter]:
    """Parameters usable on all `types` (the Resource ones when no type is given)."""
    if not types:
        return common_search_params()
    first = search_params_for(types[0])
    if len(types) == 1:
        return first
    out = {}
    for code, sp in first.items():
        others = [search_params_for(t).get(code) for t in types[1:]]
        if all(o is not None and o.type == sp.type for o in others):
            out[code] = sp
    return out


def supported_params(types: tuple[str, ...]) -> Mapping[str, SearchParameter]:
    """The search parameters on `types` the engine answers, by code (what the
    CapabilityStatement lists; https://hl7.org/fhir/R4/capabilitystatement.html)."""
    return {code: sp for code, sp in params_for(types).items() if is_supported(sp)}


class _Parser:
    def __init__(self, strict: bool, base_url: str | None) -> None:
        self.strict = strict
        self.base_url = base_url
        self.warnings: list[Issue] = []

    def unknown(self, diagnostics: str) -> None:
        if self.strict:
            raise bad_request(diagnostics, "not-supported")
        self.warnings.append(Issue("warning", "not-supported", diagnostics))

    # --- criteria --------------------------------------------------------------------------

    def criterion(
        self, types: tuple[str, ...], name: str, value: str, depth: int = 0
    ) -> Criterion | None:
        if depth > MAX_CHAIN_DEPTH:
            raise bad_request(f"Parameter '{name}' chains more than {MAX_CHAIN_DEPTH} levels")
        if name.startswith("_has:"):
            return self.has(types, name, value, depth)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        sp = params_for(types).get(code)
        if sp is None:
            where = "/".join(types) or "all resource types"
            self.unknown(f"Unknown search parameter '{code}' for {where}")
            return None
        if dot:
            return self.chain(types, sp, code, modifier or None, rest, value, depth)
        return self.clause(sp, code, modifier or None, value)

    def chain(
        self,
        types: tuple[str, ...],
        sp: SearchParameter,
        code: str,
        modifier: str | None,
        rest: str,
        value: str,
        depth: int,
    ) -> Criterion | None:
        if sp.type != "reference":
            raise bad_request(f"Parameter '{code}' is not a reference; it cannot be chained")
        inner_code = rest.partition(":")[0].partition(".")[0]
        if modifier is not None:
            if not P.is_resource_type(modifier) or (sp.target and modifier not in sp.target):
                raise bad_request(f"'{modifier}' is not a target type of parameter '{code}'")
            candidates: tuple[str, ...] = (modifier,)
        else:
            candidates = sp.target
        targets = tuple(
            t
            for t in candidates
            if inner_code.startswith("_has") or inner_code in search_params_for(t)
        )
        if not targets:
            self.unknown(f"No target type of '{code}' has a search parameter '{inner_code}'")
            return None
        inner: list[tuple[str, Criterion]] = []
        for t in targets:
            c = self.criterion((t,), rest, value, depth + 1)
            if c is None:
                return None
            inner.append((t, c))
        return Chain(code, sp, tuple(inner))

    def has(self, types: tuple[str, ...], name: str, value: str, depth: int) -> Criterion | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise bad_request(f"'{name}' is not _has:[type]:[reference parameter]:[parameter]")
        _, source, ref_code, inner_name = parts
        if not P.is_resource_type(source):
            raise bad_request(f"Unknown resource type '{source}' in '{name}'")
        ref = search_params_for(source).get(ref_code)
        if ref is None or ref.type != "reference":
            raise bad_request(f"'{ref_code}' is not a reference parameter of {source}")
        if types and ref.target and not any(t in ref.target for t in types):
            raise bad_request(f"{source}.{ref_code} does not refer to {'/'.join(types)}")
        inner = self.criterion((source,), inner_name, value, depth + 1)
        if inner is None:
            return None
        return Has(source, ref_code, inner)

    def clause(
        self, sp: SearchParameter, code: str, modifier: str | None, value: str
    ) -> Clause | None:
        type_modifier = None
        if modifier is not None and sp.type == "reference" and P.is_resource_type(modifier):
            if sp.target and modifier not in sp.target:
                raise bad_request(f"'{modifier}' is not a target type of parameter '{code}'")
            type_modifier = modifier
        elif modifier is not None:
            if modifier not in sp.modifiers and modifier not in SUPPORTED_MODIFIERS[sp.type]:
                raise bad_request(f"Unknown modifier ':{modifier}' on {sp.type} parameter '{code}'")
            if modifier not in modifiers_for(sp):
                raise bad_request(
                    f"Modifier ':{modifier}' on parameter '{code}' is not supported",
                    "not-supported",
                )
        if not is_supported(sp):
            self.unknown(f"Search parameter '{code}' is not supported")
            return None
        if modifier == "missing":
            if value not in ("true", "false"):
                raise bad_request(f"':missing' on '{code}' takes true or false, not '{value}'")
            return Clause(code, sp, modifier, (), missing=value == "true")
        components: tuple[SearchParameter, ...] = ()
        if sp.type == "composite":  # is_supported: every component is known
            comps = [search_param_by_url(url) for url, _ in sp.components]
            components = tuple(c for c in comps if c is not None)
        values: list[Value] = []
        for text in P.split_escaped(value, ","):
            if text == "":
                continue
            try:
                values.append(self.value(sp, modifier, type_modifier, text, components))
            except ValueError as e:
                raise bad_request(f"Invalid value for search parameter '{code}': {e}") from None
        if not values:
            return None
        return Clause(
            code, sp, "type" if type_modifier else modifier, tuple(values), None, components
        )

    def value(
        self,
        sp: SearchParameter,
        modifier: str | None,
        type_modifier: str | None,
        text: str,
        components: tuple[SearchParameter, ...],
    ) -> Value:
        if sp.type == "composite":
            return P.parse_composite(text, components, self.base_url)
        if sp.code in WORD_PARAMS:
            return P.parse_words(text)
        if sp.type == "string":
            return P.parse_string(text)
        if sp.type == "token":
            if modifier in ("in", "not-in"):
                return P.parse_value_set(text)
            if modifier == "text":
                return P.parse_text(text)
            if modifier == "of-type":
                return P.parse_of_type(text)
            return P.parse_token(text)
        if sp.type == "reference":
            if modifier == "identifier":
                return P.parse_identifier(text)
            return P.parse_reference_value(text, sp, type_modifier, self.base_url)
        return P.parse_simple(sp.type, text, sp, self.base_url)

    def in_list(self, value: str) -> InList | None:
        """``_list=id,...`` (https://hl7.org/fhir/R4/search.html#list); functional lists such
        as ``$current-allergies`` are not supported (a 400: ignoring one would match all)."""
        ids: list[str] = []
        for part in P.split_escaped(value, ","):
            item = P.unescape(part).strip()
            if not item:
                continue
            if item.startswith("$"):
                raise bad_request(
                    f"Functional list '{item}' is not supported: name a List by its id",
                    "not-supported",
                )
            item = item.removeprefix("List/")
            if not LIST_ID.fullmatch(item):
                raise bad_request(f"_list: '{item}' is not the id of a List")
            ids.append(item)
        return InList(tuple(ids)) if ids else None

    # --- result parameters -----------------------------------------------------------------

    def sort(self, types: tuple[str, ...], value: str) -> list[SortKey]:
        keys: list[SortKey] = []
        known = params_for(types)
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            desc = part.startswith("-")
            code = part[1:] if desc else part
            if code in RESOURCE_COLUMN_PARAMS:
                keys.append(SortKey(code, None, desc))
                continue
            sp = known.get(code)
            if sp is None or sp.type in ("composite", "special") or not sp.expression:
                raise bad_request(f"Cannot sort by '{code}': not a sortable search parameter")
            keys.append(SortKey(code, sp, desc))
        return keys

    def include(self, name: str, value: str, reverse: bool) -> Include:
        modifier = name.partition(":")[2]
        if modifier not in ("", "iterate", "recurse"):
            raise bad_request(f"Unknown modifier ':{modifier}' on {name.partition(':')[0]}")
        parts = value.split(":")
        if value == "*":
            return Include("*", "*", None, modifier != "", reverse)
        if len(parts) not in (2, 3):
            raise bad_request(f"'{value}' is not [type]:[parameter][:target type]")
        source, param = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not P.is_resource_type(source):
            raise bad_request(f"Unknown resource type '{source}' in {name}={value}")
        if param != "*" and param not in include_params(source):
            raise bad_request(f"'{param}' is not a reference parameter of {source}")
        if target is not None and not P.is_resource_type(target):
            raise bad_request(f"Unknown resource type '{target}' in {name}={value}")
        return Include(source, param, target, modifier != "", reverse)


def parse_search(
    res_type: str | None,
    params: list[tuple[str, str]],
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
    base_url: str | None = None,
    default_count: int = DEFAULT_COUNT,
    max_count: int = MAX_COUNT,
) -> SearchRequest:
    """Parse the query parameters of a search on `res_type` (None: all types, or `_type`)."""
    parser = _Parser(strict, base_url)
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            raise bad_request(f"Search parameter '{name[:50]!r}' contains a NUL character")
    types: tuple[str, ...] = ()
    if res_type is not None:
        if not P.is_resource_type(res_type):
            raise FhirError.of(404, "not-supported", f"Unknown resource type '{res_type}'")
        types = (res_type,)
    else:
        for name, value in params:
            if name == "_type":
                for t in value.split(","):
                    t = t.strip()
                    if not t:
                        continue
                    if not P.is_resource_type(t):
                        raise bad_request(f"Unknown resource type '{t}' in _type")
                    if t not in types:
                        types += (t,)
    req = SearchRequest(types=types, count=default_count, compartment=compartment)
    for name, value in params:
        base = name.partition(":")[0]
        if name == "_type":
            if res_type is not None:
                parser.unknown("_type is ignored in a search on one resource type")
                continue
            req.applied.append((name, value))
        elif name in IGNORED:
            if name == "_cursor":
                req.cursor = value
        elif name == "_count":
            try:
                count = int(value)
            except ValueError:
                raise bad_request(f"_count must be a whole number, not '{value}'") from None
            if count < 0:
                raise bad_request("_count must not be negative")
            if count > max_count:
                parser.warnings.append(
                    Issue("information", "informational", f"_count limited to {max_count}")
                )
                count = max_count
            req.count = count
            req.applied.append((name, str(count)))
        elif name == "_sort":
            req.sort = parser.sort(types, value)
            req.applied.append((name, value))
        elif name == "_total":
            if value not in TOTAL_VALUES:
                raise bad_request(f"_total must be one of {', '.join(TOTAL_VALUES)}")
            req.total = value
            req.applied.append((name, value))
        elif base in ("_include", "_revinclude"):
            req.includes.append(parser.include(name, value, base == "_revinclude"))
            req.applied.append((name, value))
        elif name == "_summary":
            if value not in SUMMARY_VALUES:
                raise bad_request(f"_summary must be one of {', '.join(SUMMARY_VALUES)}")
            req.summary = value
            req.applied.append((name, value))
        elif name == "_elements":
            req.elements = tuple(e.strip() for e in value.split(",") if e.strip())
            req.applied.append((name, value))
        elif name == "_contained":
            if value != "false":
                parser.unknown("_contained searches are not supported")
        elif base == "_list":
            if name != base:
                raise bad_request(f"Unknown modifier ':{name.partition(':')[2]}' on _list")
            in_list = parser.in_list(value)
            if in_list is not None:
                req.criteria.append(in_list)
                req.applied.append((name, value))
        elif base in UNSUPPORTED:
            parser.unknown(f"Search parameter '{base}' is not supported")
        else:
            if value == "":
                continue  # an empty parameter is ignored (https://hl7.org/fhir/R4/search.html)
            crit = parser.criterion(types, name, value)
            if crit is not None:
                req.criteria.append(crit)
                req.applied.append((name, value))
    if req.summary == "count":
        req.count = 0
    req.warnings.extend(parser.warnings)
    return req
