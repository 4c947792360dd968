"""Generate the compact R4 structure and value-set data from the official definitions.

Reads StructureDefinition snapshots (https://hl7.org/fhir/R4/structuredefinition.html) and
ValueSets/CodeSystems (https://hl7.org/fhir/R4/valueset.html) and writes ``resources/data/``:
the element trees, the expansions of required bindings (validation), the expansions of every
enumerable core ValueSet (search ``:in``/``:not-in``) and the code system implied by each
``code`` element's binding (token search, https://hl7.org/fhir/R4/search.html#token).
Run: ``python -m resources.build_definitions [DEFINITIONS_DIR [OUT_DIR]]``.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

FHIR_VERSION = "4.0.1"
DATA_DIR = Path(__file__).resolve().parent / "data"
STRUCTURES_FILE = DATA_DIR / "structures.json.gz"
VALUESETS_FILE = DATA_DIR / "valuesets-required.json.gz"
ENUMERABLE_FILE = DATA_DIR / "valuesets-enumerable.json.gz"
CODE_SYSTEMS_FILE = DATA_DIR / "code-systems.json"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fhir-r4-definitions"

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_SYSTEM_TYPE_PREFIX = "http://hl7.org/fhirpath/System."
_INLINE_TYPES = frozenset({"BackboneElement", "Element"})

JsonObj = dict[str, Any]


def _load_json(path: Path) -> JsonObj:
    """Read a JSON file, transparently gunzipping ``*.gz``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    data: JsonObj = orjson.loads(raw)
    return data


def _bundle_resources(bundle: JsonObj) -> Iterator[JsonObj]:
    for entry in bundle.get("entry", []):
        yield entry["resource"]


def _type_code(type_ref: JsonObj) -> str:
    """The FHIR type code of an ElementDefinition.type (System.* use the fhir-type extension)."""
    code: str = type_ref["code"]
    if code.startswith(_SYSTEM_TYPE_PREFIX):
        for ext in type_ref.get("extension", []):
            if ext.get("url") == _FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        return "string"
    return code


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


def _element_entry(sd: JsonObj, el: JsonObj, paths_with_children: set[str]) -> JsonObj:
    """Compact one snapshot ElementDefinition (https://hl7.org/fhir/R4/elementdefinition.html)."""
    path: str = el["path"]
    entry: JsonObj = {"path": path, "min": int(el.get("min", 0)), "max": str(el.get("max", "1"))}
    if "contentReference" in el:
        entry["contentReference"] = str(el["contentReference"]).lstrip("#")
        return entry
    types = [_type_code(t) for t in el.get("type", [])]
    # Resource.id is typed System.String/"string" in the R4 snapshots but is an `id`
    # (https://hl7.org/fhir/R4/resource.html#id).
    if sd["kind"] == "resource" and path.count(".") == 1 and path.endswith(".id"):
        types = ["id"]
    if path in paths_with_children and all(t in _INLINE_TYPES for t in types):
        types = ["BackboneElement"]
    entry["types"] = types
    if path.endswith("[x]"):
        base = path.rsplit(".", 1)[1][:-3]
        entry["choices"] = {base + t[0].upper() + t[1:]: t for t in types}
    binding = el.get("binding", {})
    if binding.get("strength") == "required" and "valueSet" in binding:
        entry["binding"] = _strip_version(str(binding["valueSet"]))
    return entry


def build_structures(sds: Iterable[JsonObj]) -> JsonObj:
    """The element tree of every resource and datatype StructureDefinition (specializations)."""
    primitives: list[str] = []
    complex_types: list[str] = []
    resources: list[str] = []
    abstract: list[str] = []
    structures: JsonObj = {}
    for sd in sds:
        if sd.get("derivation") == "constraint" or sd["kind"] == "logical":
            continue
        name: str = sd["type"]
        if sd["kind"] == "primitive-type":
            primitives.append(name)
            continue
        if sd.get("abstract"):
            abstract.append(name)
        elif sd["kind"] == "resource":
            resources.append(name)
        else:
            complex_types.append(name)
        elements = sd["snapshot"]["element"]
        all_paths = [e["path"] for e in elements]
        parents = {p.rsplit(".", 1)[0] for p in all_paths if "." in p}
        structures[name] = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "elements": [_element_entry(sd, el, parents) for el in elements if "." in el["path"]],
        }
    for entries in structures.values():
        for entry in entries["elements"]:
            types = entry.get("types", [])
            if len(types) == 1 and types[0] in primitives:
                entry["primitive"] = True
    return {
        "fhirVersion": FHIR_VERSION,
        "primitiveTypes": sorted(primitives),
        "complexTypes": sorted(complex_types),
        "resourceTypes": sorted(resources),
        "abstractTypes": sorted(abstract),
        "structures": structures,
    }


class _NotCheckable(Exception):
    """A value set whose members cannot be enumerated from the core definitions."""


class _Terminology:
    """Expands ValueSets from the CodeSystems and ValueSets of the R4 core package."""

    def __init__(self, resources: Iterable[JsonObj]) -> None:
        self.code_systems: dict[str, JsonObj] = {}
        self.value_sets: dict[str, JsonObj] = {}
        for res in resources:
            if res["resourceType"] == "CodeSystem":
                self.code_systems[res["url"]] = res
            elif res["resourceType"] == "ValueSet":
                self.value_sets[res["url"]] = res
        self._hier: dict[str, dict[str, list[str]]] = {}

    def _system_hierarchy(self, system: str) -> dict[str, list[str]]:
        """code -> child codes for a complete CodeSystem (https://hl7.org/fhir/R4/codesystem.html)."""
        if system in self._hier:
            return self._hier[system]
        cs = self.code_systems.get(system)
        if cs is None:
            raise _NotCheckable(f"code system {system} is not in the core definitions")
        if cs.get("content") != "complete":
            raise _NotCheckable(f"code system {system} content is {cs.get('content')}")
        children: dict[str, list[str]] = {}

        def walk(concepts: list[JsonObj], parent: str | None) -> None:
            for c in concepts:
                children.setdefault(c["code"], [])
                if parent is not None:
                    children[parent].append(c["code"])
                walk(c.get("concept", []), c["code"])

        walk(cs.get("concept", []), None)
        self._hier[system] = children
        return children

    def _descendants(self, system: str, code: str) -> set[str]:
        hier = self._system_hierarchy(system)
        out: set[str] = set()
        stack = list(hier.get(code, []))
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(hier.get(c, []))
        return out

    def _filter(self, system: str, flt: JsonObj) -> set[str]:
        prop, op, value = flt.get("property"), flt.get("op"), flt.get("value", "")
        hier = self._system_hierarchy(system)
        if prop == "concept" and op == "is-a":
            return {value} | self._descendants(system, value) if value in hier else set()
        if prop == "concept" and op == "descendent-of":
            return self._descendants(system, value)
        if prop == "concept" and op == "is-not-a":
            return set(hier) - {value} - self._descendants(system, value)
        raise _NotCheckable(f"filter {prop} {op} on {system}")

    def _include(self, inc: JsonObj, stack: tuple[str, ...]) -> set[tuple[str, str]]:
        result: set[tuple[str, str]] | None = None
        for vs_url in inc.get("valueSet", []):
            codes = self.expand(_strip_version(vs_url), stack)
            result = codes if result is None else result & codes
        system = inc.get("system")
        if system is not None:
            if "concept" in inc:
                codes = {(system, c["code"]) for c in inc["concept"]}
            else:
                allowed = set(self._system_hierarchy(system))
                for flt in inc.get("filter", []):
                    allowed &= self._filter(system, flt)
                codes = {(system, c) for c in allowed}
            result = codes if result is None else result & codes
        if result is None:
            raise _NotCheckable("include with neither system nor valueSet")
        return result

    def systems(self, url: str, stack: tuple[str, ...] = ()) -> set[str]:
        """The code systems a ValueSet draws its codes from (its includes, through included
        value sets), without expanding it; raise _NotCheckable when that is not known."""
        if url in stack:
            raise _NotCheckable(f"value set {url} includes itself")
        vs = self.value_sets.get(url)
        if vs is None:
            raise _NotCheckable(f"value set {url} is not in the core definitions")
        out: set[str] = set()
        for inc in vs.get("compose", {}).get("include", []):
            if "system" in inc:
                out.add(inc["system"])
            for vs_url in inc.get("valueSet", []):
                out |= self.systems(_strip_version(vs_url), (*stack, url))
        if not out:
            raise _NotCheckable(f"value set {url} names no code system")
        return out

    def expand(self, url: str, stack: tuple[str, ...] = ()) -> set[tuple[str, str]]:
        """All (system, code) pairs of a ValueSet, or raise _NotCheckable."""
        if url in stack:
            raise _NotCheckable(f"value set {url} includes itself")
        vs = self.value_sets.get(url)
        if vs is None:
            raise _NotCheckable(f"value set {url} is not in the core definitions")
        compose = vs.get("compose")
        if compose is None:
            raise _NotCheckable(f"value set {url} has no compose")
        codes: set[tuple[str, str]] = set()
        for inc in compose.get("include", []):
            codes |= self._include(inc, (*stack, url))
        for exc in compose.get("exclude", []):
            codes -= self._include(exc, (*stack, url))
        return codes


def _by_system(codes: set[tuple[str, str]]) -> dict[str, list[str]]:
    by_system: dict[str, list[str]] = {}
    for system, code in codes:
        by_system.setdefault(system, []).append(code)
    return {s: sorted(c) for s, c in by_system.items()}


def build_valuesets(structures: JsonObj, term: _Terminology) -> JsonObj:
    """Expansions of every ValueSet bound ``required`` in the structures, by URL."""
    urls: set[str] = set()
    for struct in structures["structures"].values():
        for entry in struct["elements"]:
            if "binding" in entry:
                urls.add(entry["binding"])
    expanded: JsonObj = {}
    not_checkable: JsonObj = {}
    for url in sorted(urls):
        try:
            codes = term.expand(url)
        except _NotCheckable as exc:
            not_checkable[url] = str(exc)
            continue
        expanded[url] = _by_system(codes)
    return {"fhirVersion": FHIR_VERSION, "valueSets": expanded, "notCheckable": not_checkable}


def build_enumerable(term: _Terminology) -> JsonObj:
    """Expansions of every ValueSet of the core package that can be enumerated from its
    definitions, by URL (what token ``:in``/``:not-in`` can answer;
    https://hl7.org/fhir/R4/search.html#token)."""
    expanded: JsonObj = {}
    for url in sorted(term.value_sets):
        try:
            expanded[url] = _by_system(term.expand(url))
        except _NotCheckable:
            continue
    return {"fhirVersion": FHIR_VERSION, "valueSets": expanded}


def build_code_systems(structures: JsonObj, term: _Terminology) -> JsonObj:
    """The implied system of each ``code`` element: the one code system its required
    binding's value set draws from, by element path (elements bound to value sets of several
    systems, or to ones outside the core package, have none)."""
    implied: dict[str, str] = {}
    for struct in structures["structures"].values():
        for entry in struct["elements"]:
            if entry.get("types") != ["code"] or "binding" not in entry:
                continue
            try:
                systems = term.systems(entry["binding"])
            except _NotCheckable:
                continue
            if len(systems) == 1:
                implied[entry["path"]] = next(iter(systems))
    return {"fhirVersion": FHIR_VERSION, "codeSystems": dict(sorted(implied.items()))}


def _write(path: Path, data: JsonObj) -> int:
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    blob = gzip.compress(raw, compresslevel=9, mtime=0)
    path.write_bytes(blob)
    return len(blob)


def main(argv: list[str] | None = None) -> int:
    """Build the data files from the R4 definition bundles: ``[DEFINITIONS_DIR [OUT_DIR]]``."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else DEFAULT_SOURCE
    out = Path(args[1]) if len(args) > 1 else DATA_DIR
    sds = [
        r
        for name in ("profiles-types.json", "profiles-resources.json.gz")
        for r in _bundle_resources(_load_json(source / name))
        if r["resourceType"] == "StructureDefinition"
    ]
    structures = build_structures(sds)
    term = _Terminology(_bundle_resources(_load_json(source / "valuesets.json.gz")))
    valuesets = build_valuesets(structures, term)
    enumerable = build_enumerable(term)
    code_systems = build_code_systems(structures, term)
    out.mkdir(parents=True, exist_ok=True)
    size_s = _write(out / STRUCTURES_FILE.name, structures)
    size_v = _write(out / VALUESETS_FILE.name, valuesets)
    size_e = _write(out / ENUMERABLE_FILE.name, enumerable)
    raw = orjson.dumps(code_systems, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    (out / CODE_SYSTEMS_FILE.name).write_bytes(raw)
    print(
        f"{STRUCTURES_FILE.name}: {len(structures['resourceTypes'])} resource types, "
        f"{len(structures['complexTypes'])} datatypes, {size_s} bytes\n"
        f"{VALUESETS_FILE.name}: {len(valuesets['valueSets'])} value sets expanded, "
        f"{len(valuesets['notCheckable'])} not checkable, {size_v} bytes\n"
        f"{ENUMERABLE_FILE.name}: {len(enumerable['valueSets'])} of {len(term.value_sets)} "
        f"value sets enumerable, {size_e} bytes\n"
        f"{CODE_SYSTEMS_FILE.name}: {len(code_systems['codeSystems'])} code elements with an "
        f"implied system, {len(raw)} bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
