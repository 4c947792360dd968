"""Patients and encounters as the pages show them (patient picker, launcher), read through the
store interface and the search engine."""

from __future__ import annotations

from typing import Any

from fhir_server.context import Context
from fhir_server.routing import valid_id
from resources import json_numbers

MAX_LISTED = 100


def _name(resource: dict[str, Any]) -> str:
    for n in resource.get("name") or []:
        if not isinstance(n, dict):
            continue
        if n.get("text"):
            return str(n["text"])
        given = " ".join(str(g) for g in n.get("given") or [])
        family = str(n.get("family") or "")
        if given or family:
            return f"{given} {family}".strip()
    return "(no name)"


def patient_label(ctx: Context, patient_id: str | None) -> str | None:
    """"Name (birth date), Patient/id" for a page, or None."""
    if not patient_id:
        return None
    stored = ctx.store.read("Patient", patient_id)
    if stored is None or stored.body is None:
        return f"Patient/{patient_id}"
    res = json_numbers.loads(stored.body)
    born = f" (born {res['birthDate']})" if res.get("birthDate") else ""
    return f"{_name(res)}{born}, Patient/{patient_id}"


def patient_exists(ctx: Context, patient_id: str) -> bool:
    """Whether Patient/`patient_id` exists and is not deleted."""
    if not patient_id or not valid_id(patient_id):
        return False
    stored = ctx.store.read("Patient", patient_id)
    return stored is not None and not stored.deleted


def patients(ctx: Context, query: str | None) -> list[tuple[str, str]]:
    """(id, label) of up to MAX_LISTED patients, those whose name starts with `query` if
    given, sorted by family name."""
    params = [("_count", str(MAX_LISTED)), ("_sort", "family")]
    if query:
        params.append(("name", query))
    result = ctx.search_engine.search(ctx.store, "Patient", params)
    bodies = ctx.store.load_bodies(result.pks)
    out = []
    for pk in result.pks:
        stored = bodies.get(pk)
        if stored is None or stored.body is None:
            continue
        res = json_numbers.loads(stored.body)
        born = f", born {res['birthDate']}" if res.get("birthDate") else ""
        out.append((stored.res_id, f"{_name(res)}{born}"))
    return out


def encounters_of(ctx: Context, patient_id: str) -> list[tuple[str, str]]:
    """(id, label) of the patient's most recent encounters."""
    if not patient_exists(ctx, patient_id):
        return []
    result = ctx.search_engine.search(ctx.store, "Encounter", [
        ("patient", f"Patient/{patient_id}"), ("_sort", "-date"), ("_count", "50")])
    bodies = ctx.store.load_bodies(result.pks)
    out = []
    for pk in result.pks:
        stored = bodies.get(pk)
        if stored is None or stored.body is None:
            continue
        res = json_numbers.loads(stored.body)
        when = (res.get("period") or {}).get("start", "")
        kind = ""
        for t in res.get("type") or []:
            if isinstance(t, dict):
                kind = t.get("text") or next((c.get("display", "") for c in t.get("coding", [])
                                              if isinstance(c, dict)), "")
                break
        out.append((stored.res_id, f"{when[:10]} {kind}".strip() or stored.res_id))
    return out
