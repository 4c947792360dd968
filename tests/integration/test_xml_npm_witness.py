"""An independent witness for our XML: the npm `fhir` package (FHIR.js, pinned in
tests/npm/package-lock.json) writes each of the 528 official examples as XML with node, and its
tree must equal ours (https://hl7.org/fhir/R4/xml.html), element by element and attribute by
attribute.

Two things FHIR.js gets wrong are asserted as such, file by file, never skipped:
- decimals: it writes a decimal as a JavaScript Number, so `1.0` becomes `1` and
  `66.899999999999991` becomes `66.89999999999999`; R4 says a decimal's precision is part of its
  value (https://hl7.org/fhir/R4/datatypes.html#decimal), so we keep the digits written.
- narrative whitespace: xml-js drops text nodes that are only whitespace inside the XHTML div;
  the narrative is XHTML content to be kept as it is (https://hl7.org/fhir/R4/narrative.html).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from resources.json_to_xml import json_to_xml
from tests.conftest import SHARED_DATA

NPM_DIR = Path(__file__).resolve().parents[1] / "npm"
EXAMPLES = sorted((SHARED_DATA / "fhir-r4-examples").glob("*.json"))
XHTML = "{http://www.w3.org/1999/xhtml}"


def js_number(text: str) -> str:
    """How JavaScript's String(Number(text)) writes a decimal (the shortest text that reads
    back as the same double, without a trailing '.0'; exponents as 1e-7, 1e+21)."""
    value = float(text)
    out = repr(value)
    if "e" in out:
        mantissa, _, exp = out.partition("e")
        mantissa = mantissa[:-2] if mantissa.endswith(".0") else mantissa
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return out[:-2] if out.endswith(".0") else out


def _decimal_literals(raw: bytes) -> list[str]:
    found: list[str] = []
    json.loads(raw, parse_float=lambda s: found.append(s))
    return found


def _npm_install() -> None:
    """`npm ci` into tests/npm/node_modules (git-ignored) unless the pinned version is there."""
    lock = json.loads((NPM_DIR / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/fhir"]["version"]
    installed = NPM_DIR / "node_modules" / "fhir" / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == pinned:
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are needed for the XML witness test")
        pytest.skip("node/npm not installed")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NPM_DIR, check=True,
                   capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def theirs() -> dict[str, str]:
    """FHIR.js's XML of every example, by file stem (one node process for all)."""
    _npm_install()
    request = {"definitions": str(SHARED_DATA / "fhir-r4-definitions"),
               "files": [str(p) for p in EXAMPLES]}
    done = subprocess.run(["node", str(NPM_DIR / "fhir_xml.js")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=600, check=True)
    out: dict[str, Any] = json.loads(done.stdout)
    errors = {Path(k).stem: v["error"] for k, v in out.items() if isinstance(v, dict)}
    assert not errors, errors
    return {Path(k).stem: v for k, v in out.items()}


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


class Diff:
    """The differences between two trees: known FHIR.js faults, and anything else."""

    def __init__(self) -> None:
        self.decimals: list[tuple[str, str]] = []  # (ours, theirs)
        self.dropped_whitespace = 0
        self.other: list[str] = []

    def text(self, ours: str | None, theirs: str | None, in_xhtml: bool, where: str) -> None:
        if (ours or "") == (theirs or ""):
            return
        if not in_xhtml and _blank(ours) and _blank(theirs):
            return  # whitespace between FHIR elements is not content
        if in_xhtml and _blank(ours) and not theirs:
            self.dropped_whitespace += 1
            return
        self.other.append(f"{where}: text {ours!r} != {theirs!r}")

    def element(self, a: Any, b: Any, where: str) -> None:
        if a.tag != b.tag:
            self.other.append(f"{where}: <{a.tag}> != <{b.tag}>")
            return
        in_xhtml = a.tag.startswith(XHTML)
        here = f"{where}/{a.tag.rpartition('}')[2]}"
        attrs_a, attrs_b = dict(a.attrib), dict(b.attrib)
        va, vb = attrs_a.get("value"), attrs_b.get("value")
        if va != vb and va is not None and vb is not None and _same_number(va, vb):
            self.decimals.append((va, vb))
            attrs_a.pop("value"), attrs_b.pop("value")
        if attrs_a != attrs_b:
            self.other.append(f"{here}: attributes {attrs_a} != {attrs_b}")
        self.text(a.text, b.text, in_xhtml, here)
        kids_a, kids_b = list(a), list(b)
        if [k.tag for k in kids_a] != [k.tag for k in kids_b]:
            self.other.append(f"{here}: children {[k.tag for k in kids_a]} != "
                              f"{[k.tag for k in kids_b]}")
            return
        for x, y in zip(kids_a, kids_b, strict=True):
            self.element(x, y, here)
            self.text(x.tail, y.tail, in_xhtml, here)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _has_blank_xhtml_text(div: str) -> bool:
    """Whether a narrative has whitespace-only text nodes (what xml-js drops)."""
    root = etree.fromstring(div.encode())
    for el in root.iter():
        if (el.text is not None and _blank(el.text) and len(el)) or \
                (el is not root and el.tail is not None and _blank(el.tail)):
            return True
    return False


def _divs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [d for k, v in value.items()
                for d in ([v] if k == "div" and isinstance(v, str) else _divs(v))]
    if isinstance(value, list):
        return [d for v in value for d in _divs(v)]
    return []


def test_npm_fhir_agrees_with_our_xml(theirs: dict[str, str]) -> None:
    assert len(theirs) == len(EXAMPLES) == 528
    decimal_files: dict[str, list[tuple[str, str]]] = {}
    whitespace_files: set[str] = set()
    for path in EXAMPLES:
        raw = path.read_bytes()
        diff = Diff()
        diff.element(etree.fromstring(json_to_xml(raw)),
                     etree.fromstring(theirs[path.stem].encode()), "")
        assert not diff.other, (path.stem, diff.other[:5])
        if diff.decimals:
            decimal_files[path.stem] = diff.decimals
        if diff.dropped_whitespace:
            whitespace_files.add(path.stem)
        # our XML carries the JSON's text exactly; FHIR.js writes a JavaScript Number
        literals = _decimal_literals(raw)
        for ours, js in diff.decimals:
            assert ours in literals and js == js_number(ours) != ours
    assert set(decimal_files) == {p.stem for p in EXAMPLES if any(
        js_number(d) != d for d in _decimal_literals(p.read_bytes()))}
    assert len(decimal_files) > 20
    expected_ws = {p.stem for p in EXAMPLES
                   if any(_has_blank_xhtml_text(d) for d in _divs(json.loads(p.read_bytes())))}
    assert whitespace_files == expected_ws
    assert len(expected_ws) > 100  # most official narratives are indented XHTML
