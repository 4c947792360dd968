"""Generate the profile and terminology data that `$validate`, `$expand`, `$lookup` and
`$validate-code` read, from the official R4 definitions.

Writes ``resources/data/profiles.json.gz``: the snapshots of the core resource
StructureDefinitions and of the other profiles the spec publishes (vital signs, lipids, genetics,
shareable definitions...; https://hl7.org/fhir/R4/profilelist.html), reduced to what validation
uses (https://hl7.org/fhir/R4/elementdefinition.html); and ``resources/data/terminology.json.gz``:
the R4 CodeSystems and ValueSets without narrative (https://hl7.org/fhir/R4/terminologies-systems.html).
Run: ``python -m resources.build_profiles [DEFINITIONS_DIR [OUT_DIR]]``.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

from resources.build_definitions import DATA_DIR, DEFAULT_SOURCE, _bundle_resources, _load_json

PROFILES_FILE = DATA_DIR / "profiles.json.gz"
TERMINOLOGY_FILE = DATA_DIR / "terminology.json.gz"

JsonObj = dict[str, Any]

_BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"
_ELEMENT_KEYS = ("id", "path", "sliceName", "min", "max", "slicing", "type")
_DROP_RESOURCE_KEYS = frozenset({"text", "extension", "contact", "jurisdiction", "meta",
                                 "identifier", "publisher", "purpose", "copyright", "description"})


def _element(el: JsonObj) -> JsonObj:
    out: JsonObj = {k: el[k] for k in _ELEMENT_KEYS if k in el}
    if "type" in out:
        out["type"] = [{"code": t["code"], **({"profile": t["profile"]} if "profile" in t else {})}
                       for t in out["type"]]
    if "slicing" in out:
        out["slicing"] = {k: v for k, v in out["slicing"].items() if k != "description"}
    for k, v in el.items():
        if k.startswith(("fixed", "pattern")):
            out[k] = v
    binding = el.get("binding") or {}
    if binding.get("strength") == "required" and binding.get("valueSet"):
        out["binding"] = binding["valueSet"]
    constraints = [
        {"key": c["key"], "severity": c.get("severity", "error"), "human": c.get("human", ""),
         "expression": c["expression"], "source": c.get("source", ""),
         "bestPractice": any(e.get("url") == _BEST_PRACTICE and e.get("valueBoolean")
                             for e in c.get("extension", []))}
        for c in el.get("constraint", []) if c.get("expression")
    ]
    if constraints:
        out["constraint"] = constraints
    return out


def _profile(sd: JsonObj) -> JsonObj:
    return {
        "url": sd["url"], "name": sd.get("name"), "type": sd["type"],
        "derivation": sd.get("derivation", "specialization"),
        "baseDefinition": sd.get("baseDefinition"),
        "elements": [_element(el) for el in sd["snapshot"]["element"]],
    }


def build_profiles(source: Path) -> JsonObj:
    """The resource profiles, by canonical URL."""
    out: dict[str, JsonObj] = {}
    for name in ("profiles-resources.json.gz", "profiles-others.json.gz"):
        for res in _bundle_resources(_load_json(source / name)):
            if (res.get("resourceType") == "StructureDefinition" and res.get("kind") == "resource"
                    and not res.get("abstract") and "snapshot" in res):
                out[res["url"]] = _profile(res)
    return {"profiles": out}


def build_terminology(source: Path) -> JsonObj:
    """The R4 CodeSystems and ValueSets, without narrative and publishing metadata."""
    code_systems: list[JsonObj] = []
    value_sets: list[JsonObj] = []
    for res in _bundle_resources(_load_json(source / "valuesets.json.gz")):
        slim = {k: v for k, v in res.items() if k not in _DROP_RESOURCE_KEYS}
        if res["resourceType"] == "CodeSystem":
            code_systems.append(slim)
        elif res["resourceType"] == "ValueSet":
            value_sets.append(slim)
    return {"codeSystems": code_systems, "valueSets": value_sets}


def _write(path: Path, data: JsonObj) -> int:
    raw = gzip.compress(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), mtime=0)
    path.write_bytes(raw)
    return len(raw)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else DEFAULT_SOURCE
    out = Path(args[1]) if len(args) > 1 else DATA_DIR
    profiles = build_profiles(source)
    size_p = _write(out / PROFILES_FILE.name, profiles)
    term = build_terminology(source)
    size_t = _write(out / TERMINOLOGY_FILE.name, term)
    sys.stdout.write(
        f"{PROFILES_FILE.name}: {len(profiles['profiles'])} profiles, {size_p} bytes\n"
        f"{TERMINOLOGY_FILE.name}: {len(term['codeSystems'])} code systems, "
        f"{len(term['valueSets'])} value sets, {size_t} bytes\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
