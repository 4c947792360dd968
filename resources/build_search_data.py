"""Build the committed search data from the official R4 definitions.

Usage: ``python -m resources.build_search_data PATH/fhir-r4-definitions``

Writes into ``resources/data/``: ``search-parameters.json`` (the 1375 R4 SearchParameters,
compacted, plus the concrete resource types; https://hl7.org/fhir/R4/searchparameter.html),
``compartments.json`` (https://hl7.org/fhir/R4/compartmentdefinition.html) and
``summary-elements.json`` (isSummary elements, for _summary). Output is sorted, so reruns
are stable.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"


def _load(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def compact_search_parameter(sp: dict[str, Any]) -> dict[str, Any]:
    """The fields of one SearchParameter the server uses."""
    out: dict[str, Any] = {
        "url": sp["url"],
        "code": sp["code"],
        "type": sp["type"],
        "base": sorted(sp["base"]),
    }
    if sp.get("expression"):
        out["expression"] = sp["expression"]
    if sp.get("target"):
        out["target"] = sorted(sp["target"])
    if sp.get("comparator"):
        out["comparators"] = list(sp["comparator"])
    if sp.get("modifier"):
        out["modifiers"] = list(sp["modifier"])
    if sp.get("component"):
        out["components"] = [[c["definition"], c["expression"]] for c in sp["component"]]
    if sp.get("description"):
        out["description"] = sp["description"]
    return out


def resource_types(definitions: Path) -> dict[str, str]:
    """Concrete resource type name -> the abstract type it specialises (Resource/DomainResource)."""
    bundle = _load(definitions / "profiles-resources.json.gz")
    out: dict[str, str] = {}
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource":
            continue
        if sd.get("abstract") or sd.get("derivation") != "specialization":
            continue
        out[sd["type"]] = sd["baseDefinition"].rsplit("/", 1)[-1]
    return dict(sorted(out.items()))


def build_summary_elements(definitions: Path) -> dict[str, Any]:
    """Top-level elements marked isSummary, and mandatory ones (min >= 1), per resource type,
    for _summary (https://hl7.org/fhir/R4/search.html#summary)."""
    bundle = _load(definitions / "profiles-resources.json.gz")
    out = []
    types = resource_types(definitions)
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd.get("resourceType") != "StructureDefinition" or sd.get("type") not in types:
            continue
        if sd.get("derivation") != "specialization":
            continue
        top = [e for e in sd["snapshot"]["element"] if e["path"].count(".") == 1]
        out.append(
            {
                "type": sd["type"],
                "summary": [e["path"].split(".", 1)[1] for e in top if e.get("isSummary")],
                "mandatory": [e["path"].split(".", 1)[1] for e in top if e.get("min", 0) >= 1],
            }
        )
    out.sort(key=lambda d: d["type"])
    return {"fhirVersion": "4.0.1", "elements": out}


def build_search_parameters(definitions: Path) -> dict[str, Any]:
    bundle = _load(definitions / "search-parameters.json")
    params = [compact_search_parameter(e["resource"]) for e in bundle["entry"]]
    params.sort(key=lambda p: p["url"])
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.fhir.r4 search-parameters.json (Bundle id=searchParams)",
        "resourceTypes": resource_types(definitions),
        "searchParameters": params,
    }


def build_compartments(definitions: Path) -> dict[str, Any]:
    out = []
    for path in sorted((definitions / "compartmentdefinitions").glob("*.json")):
        cd = _load(path)
        resources = {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
        out.append(
            {
                "id": cd["id"],
                "url": cd["url"],
                "code": cd["code"],
                "search": bool(cd.get("search")),
                "resources": dict(sorted(resources.items())),
            }
        )
    out.sort(key=lambda c: c["url"])
    return {"fhirVersion": "4.0.1", "compartmentDefinitions": out}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write `data` with one line per list item of its top-level lists (diff-friendly)."""
    lines = ["{"]
    items = list(data.items())
    for i, (key, value) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        if isinstance(value, list):
            lines.append(f" {json.dumps(key)}: [")
            for j, item in enumerate(value):
                comma = "," if j < len(value) - 1 else ""
                lines.append("  " + json.dumps(item, ensure_ascii=False) + comma)
            lines.append(" ]" + sep)
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{sep}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    definitions = Path(argv[0])
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    sp = build_search_parameters(definitions)
    _write(DATA_DIR / "search-parameters.json", sp)
    cds = build_compartments(definitions)
    _write(DATA_DIR / "compartments.json", cds)
    summary = build_summary_elements(definitions)
    _write(DATA_DIR / "summary-elements.json", summary)
    print(
        f"wrote {len(sp['searchParameters'])} search parameters, "
        f"{len(sp['resourceTypes'])} resource types, "
        f"{len(cds['compartmentDefinitions'])} compartment definitions, "
        f"summary elements of {len(summary['elements'])} types to {DATA_DIR}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
