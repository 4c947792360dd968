"""Parse one search value per parameter type (https://hl7.org/fhir/R4/search.html#ptypes),
with the escaping rules of https://hl7.org/fhir/R4/search.html#escaping.

Every failure is a ValueError whose message names what is wrong; the caller adds the
parameter name and answers 400.
"""

from __future__ import annotations

from fhir_server.search.model import (
    PREFIXES,
    CompositeValue,
    DateValue,
    IdentifierValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
    ValueSetValue,
    WordsValue,
)
from fhir_server.search.normalize import (
    clip,
    date_range,
    normalize_string,
    parse_decimal,
    precision_range,
)
from fhir_server.search.ucum import UCUM_SYSTEM, canonical
from fhir_server.search.values import EXACT_MAX, parse_reference
from fhir_server.search.words import MIN_WORD, query_words
from resources.search_parameters import SearchParameter, resource_types
from resources.terminology import value_set_expansion


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash; escapes are kept for a later unescape.

    A `sep` is escaped when the backslashes just before it are odd in number (each pair is an
    escaped backslash); `sep` is never a backslash itself, so a run never spans a `sep`."""
    pieces = text.split(sep)
    if "\\" not in text:
        return pieces
    out: list[str] = []
    cur = ""
    for n, piece in enumerate(pieces):
        cur += piece
        if n + 1 < len(pieces) and (len(piece) - len(piece.rstrip("\\"))) % 2 == 1:
            cur += sep
            continue
        out.append(cur)
        cur = ""
    return out


def unescape(text: str) -> str:
    """Drop the backslash of ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def split_prefix(text: str) -> tuple[str, str]:
    """(prefix, rest): ``ge2020`` -> (ge, 2020); no prefix means eq."""
    if len(text) > 2 and text[:2] in PREFIXES:
        return text[:2], text[2:]
    return "eq", text


def parse_date(text: str) -> DateValue:
    prefix, rest = split_prefix(text.strip())
    try:
        low, high = date_range(rest)
    except (ValueError, OverflowError):
        raise ValueError(f"'{text}' is not a date, dateTime or instant") from None
    return DateValue(prefix, low, high)


def parse_number(text: str) -> NumberValue:
    prefix, rest = split_prefix(text.strip())
    try:
        d = parse_decimal(rest)
    except ValueError:
        raise ValueError(f"'{text}' is not a number") from None
    low, high = precision_range(d)
    return NumberValue(prefix, float(d), low, high)


def parse_quantity(text: str) -> QuantityValue:
    parts = [unescape(p) for p in split_escaped(text, "|")]
    if len(parts) not in (1, 3):
        raise ValueError(f"'{text}' is not [prefix]number|system|code")
    number = parse_number(parts[0])
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    canon_code = None
    canon = None
    if code and system in (None, UCUM_SYSTEM):
        v = canonical(number.value, code)
        lo = canonical(number.low, code)
        hi = canonical(number.high, code)
        if v and lo and hi:
            canon_code = v[1]
            canon = NumberValue(number.prefix, v[0], lo[0], hi[0])
    return QuantityValue(number.prefix, number, system, code, canon_code, canon)


def parse_token(text: str) -> TokenValue:
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, clip(unescape(parts[0])))
    if len(parts) != 2:
        raise ValueError(f"'{text}' is not [system]|[code]")
    system, code = (unescape(p) for p in parts)
    if not system and not code:
        raise ValueError("'|' alone is not a token")
    return TokenValue(clip(system), clip(code) if code else None)


def parse_of_type(text: str) -> IdentifierValue:
    parts = [unescape(p) for p in split_escaped(text, "|")]
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError(f"'{text}' is not type-system|type-code|value")
    return IdentifierValue(None, clip(parts[2]), parts[0], parts[1])


def parse_identifier(text: str) -> IdentifierValue:
    tok = parse_token(text)
    if tok.code is None:
        raise ValueError(f"'{text}' has no identifier value")
    return IdentifierValue(tok.system, tok.code)


def parse_string(text: str) -> StringValue:
    raw = unescape(text)
    return StringValue(normalize_string(raw), raw[:EXACT_MAX])


def parse_reference_value(
    text: str, sp: SearchParameter, type_modifier: str | None, base_url: str | None
) -> ReferenceValue:
    raw = unescape(text).strip()
    if not raw:
        raise ValueError("empty reference")
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        raw = raw[len(base_url.rstrip("/")) + 1 :]
    if "://" in raw or raw.startswith("urn:"):
        parsed = parse_reference(raw)
        url = parsed[2] if parsed else clip(raw.split("|", 1)[0])
        return ReferenceValue(None, None, url)
    if "/" in raw:
        parsed = parse_reference(raw)
        if parsed is None or parsed[0] is None:
            raise ValueError(f"'{text}' is not [type]/[id], [id] or an absolute URL")
        typ, rid, _ = parsed
        if type_modifier and typ != type_modifier:
            raise ValueError(f"'{text}' is not a {type_modifier} reference")
        return ReferenceValue(typ, rid, None)
    if type_modifier is None and len(sp.target) == 1:
        type_modifier = sp.target[0]
    return ReferenceValue(type_modifier, raw, None)


def parse_uri(text: str) -> UriValue:
    raw = unescape(text).strip()
    if not raw:
        raise ValueError("empty uri")
    return UriValue(clip(raw))


def parse_simple(sp_type: str, text: str, sp: SearchParameter, base_url: str | None) -> Value:
    """One value of a non-composite parameter without modifiers that change the syntax."""
    if sp_type == "string":
        return parse_string(text)
    if sp_type == "token":
        return parse_token(text)
    if sp_type == "date":
        return parse_date(text)
    if sp_type == "number":
        return parse_number(text)
    if sp_type == "quantity":
        return parse_quantity(text)
    if sp_type == "reference":
        return parse_reference_value(text, sp, None, base_url)
    if sp_type == "uri":
        return parse_uri(text)
    raise ValueError(f"parameters of type {sp_type} are not supported")


def parse_composite(
    text: str, components: tuple[SearchParameter, ...], base_url: str | None
) -> CompositeValue:
    parts = split_escaped(text, "$")
    if len(parts) != len(components):
        raise ValueError(f"'{text}' needs {len(components)} '$'-separated components")
    return CompositeValue(
        tuple(parse_simple(c.type, p, c, base_url) for c, p in zip(components, parts, strict=True))
    )


def parse_text(text: str) -> TextValue:
    return TextValue(normalize_string(unescape(text)))


def parse_value_set(text: str) -> ValueSetValue:
    """The value of a token ``:in``/``:not-in``: the canonical URL of a value set the server
    can enumerate (the R4 core ones; https://hl7.org/fhir/R4/search.html#token)."""
    url = unescape(text).strip()
    expansion = value_set_expansion(url)
    if expansion is None:
        raise ValueError(
            f"value set '{url}' is unknown: only the enumerable R4 core value sets "
            "(http://hl7.org/fhir/ValueSet/...) can be used with :in and :not-in"
        )
    codes = tuple((system, tuple(sorted(expansion[system]))) for system in sorted(expansion))
    return ValueSetValue(url.split("|", 1)[0], codes)


def parse_words(text: str) -> WordsValue:
    """A ``_text``/``_content`` value: its words (fhir_server.search.words)."""
    found = query_words(unescape(text))
    if not found:
        raise ValueError(
            f"'{text}' has no word to search for (words start with a letter and have at "
            f"least {MIN_WORD} characters)"
        )
    return WordsValue(tuple(found))


def is_resource_type(name: str) -> bool:
    """Whether `name` is a concrete R4 resource type."""
    return name in resource_types()
