"""A small UCUM canonicaliser so quantity search compares `mg` with `g` (https://ucum.org/ucum,
https://hl7.org/fhir/R4/search.html#quantity: servers may canonicalise units).

Handles metric prefixes, products/quotients with integer exponents, annotations and the common
clinical atoms; anything else is left as written (searches then compare the unit code as is).
"""

from __future__ import annotations

import re
from functools import lru_cache

UCUM_SYSTEM = "http://unitsofmeasure.org"

_PREFIXES = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12,
    "f": 1e-15, "a": 1e-18, "z": 1e-21, "y": 1e-24,
}  # fmt: skip

Dims = tuple[tuple[str, int], ...]

# atom -> (factor to base units, base dimensions, metric: may take a prefix)
_ATOMS: dict[str, tuple[float, dict[str, int], bool]] = {
    "g": (1.0, {"g": 1}, True),
    "m": (1.0, {"m": 1}, True),
    "s": (1.0, {"s": 1}, True),
    "mol": (1.0, {"mol": 1}, True),
    "K": (1.0, {"K": 1}, True),
    "L": (1e-3, {"m": 3}, True),
    "l": (1e-3, {"m": 3}, True),
    "eq": (1.0, {"eq": 1}, True),
    "U": (1.0, {"U": 1}, True),
    "[IU]": (1.0, {"[IU]": 1}, True),
    "[iU]": (1.0, {"[IU]": 1}, True),
    "Pa": (1e3, {"g": 1, "m": -1, "s": -2}, True),
    "bar": (1e8, {"g": 1, "m": -1, "s": -2}, True),
    "m[Hg]": (133322.387415e3, {"g": 1, "m": -1, "s": -2}, True),
    "m[H2O]": (9806.65e3, {"g": 1, "m": -1, "s": -2}, True),
    "N": (1e3, {"g": 1, "m": 1, "s": -2}, True),
    "J": (1e3, {"g": 1, "m": 2, "s": -2}, True),
    "W": (1e3, {"g": 1, "m": 2, "s": -3}, True),
    "cal": (4184.0, {"g": 1, "m": 2, "s": -2}, True),
    "Hz": (1.0, {"s": -1}, True),
    "min": (60.0, {"s": 1}, False),
    "h": (3600.0, {"s": 1}, False),
    "d": (86400.0, {"s": 1}, False),
    "wk": (604800.0, {"s": 1}, False),
    "mo": (2629800.0, {"s": 1}, False),
    "a": (31557600.0, {"s": 1}, False),
    "[lb_av]": (453.59237, {"g": 1}, False),
    "[oz_av]": (28.349523125, {"g": 1}, False),
    "[in_i]": (0.0254, {"m": 1}, False),
    "[ft_i]": (0.3048, {"m": 1}, False),
    "[mi_i]": (1609.344, {"m": 1}, False),
    "%": (0.01, {}, False),
    "1": (1.0, {}, False),
    "[ppm]": (1e-6, {}, False),
    "[ppb]": (1e-9, {}, False),
}

_TOKEN = re.compile(r"([./])")
_EXP = re.compile(r"^(.*?)([+-]?\d+)$")
_TEN_POWER = re.compile(r"^10[*^]([+-]?\d+)$")
_ANNOTATION = re.compile(r"\{[^}]*\}")


def _atom(symbol: str) -> tuple[float, dict[str, int]] | None:
    if symbol in _ATOMS:
        f, dims, _ = _ATOMS[symbol]
        return f, dims
    for plen in (2, 1):
        prefix, rest = symbol[:plen], symbol[plen:]
        if prefix in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
            f, dims, _ = _ATOMS[rest]
            return _PREFIXES[prefix] * f, dims
    return None


def _component(text: str) -> tuple[float, dict[str, int]] | None:
    if not text:
        return 1.0, {}
    m = _TEN_POWER.match(text)
    if m:
        return 10.0 ** int(m.group(1)), {}
    atom = _atom(text)
    exponent = 1
    if atom is None:
        m = _EXP.match(text)
        if not m or not m.group(1):
            return None
        atom = _atom(m.group(1))
        exponent = int(m.group(2))
        if atom is None:
            return None
    f, dims = atom
    return f**exponent, {k: v * exponent for k, v in dims.items()}


@lru_cache(maxsize=4096)
def _parse(code: str) -> tuple[float, str] | None:
    text = _ANNOTATION.sub("", code.strip())
    if "(" in text or " " in text or not code.strip():
        return None
    factor = 1.0
    dims: dict[str, int] = {}
    sign = 1
    for part in _TOKEN.split(text):
        if part == ".":
            sign = 1
            continue
        if part == "/":
            sign = -1
            continue
        comp = _component(part)
        if comp is None:
            return None
        f, d = comp
        factor *= f**sign
        for k, v in d.items():
            dims[k] = dims.get(k, 0) + sign * v
    canon = ".".join(k if v == 1 else f"{k}{v}" for k, v in sorted(dims.items()) if v)
    return factor, canon or "1"


def canonical(value: float, code: str) -> tuple[float, str] | None:
    """`value` `code` in canonical UCUM base units as (value, canonical code), or None when
    the unit is outside the supported subset or dimensionless."""
    if code == "Cel":
        return _round(value + 273.15), "K"
    if code == "[degF]":
        return _round((value - 32.0) * 5.0 / 9.0 + 273.15), "K"
    parsed = _parse(code)
    if parsed is None:
        return None
    factor, canon = parsed
    if canon == "1":  # dimensionless ({score}, %, 1): compared as written, not as numbers of 1
        return None
    return _round(value * factor), canon


def _round(x: float) -> float:
    """Drop binary noise (0.1 * 3) beyond 12 significant digits."""
    return float(f"{x:.12g}")
