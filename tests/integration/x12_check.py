"""Independent checks of an 837P interchange: pyx12's 005010X222A1 validation, and the
envelope counts and control numbers read back from the text."""

from __future__ import annotations

import io
import json
from typing import Any

import pyx12.params
import pyx12.x12n_document


def pyx12_errors(text: str) -> list[str]:
    """Every error pyx12 reports for `text` (empty when it validates)."""
    out_json, out_997, out_html = io.StringIO(), io.StringIO(), io.StringIO()
    ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), out_997,
                                           out_html, None, out_json)
    errors: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for e in node.get("errors", []):
                errors.append(str(e.get("err_str", e)))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(out_json.getvalue() or "{}"))
    if not ok and not errors:
        errors.append("pyx12 rejected the interchange")
    return errors


def segments(text: str) -> list[list[str]]:
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def check_837p(text: str) -> list[list[str]]:
    """Assert the interchange validates and its trailers agree; return its segments."""
    errors = pyx12_errors(text)
    assert errors == [], errors
    segs = segments(text)
    ids = [s[0] for s in segs]
    assert ids[0] == "ISA" and ids[1] == "GS" and ids[2] == "ST" and ids[-1] == "IEA"
    isa, gs, st = segs[0], segs[1], segs[2]
    se = segs[ids.index("SE")]
    ge, iea = segs[-2], segs[-1]
    assert int(se[1]) == ids.index("SE") - ids.index("ST") + 1
    assert se[2] == st[2]
    assert ge[1] == "1" and ge[2] == gs[6]
    assert iea[1] == "1" and iea[2] == isa[13]
    assert gs[8] == st[3] == "005010X222A1"
    return segs


def find(segs: list[list[str]], seg_id: str, *first: str) -> list[list[str]]:
    """Segments with this id whose first elements are `first`."""
    return [s for s in segs if s[0] == seg_id and s[1:1 + len(first)] == list(first)]
