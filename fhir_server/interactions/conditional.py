"""Finding the target of a conditional interaction by search criteria
(https://hl7.org/fhir/R4/http.html#cond-update, #ccreate, #cdelete)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fhir_server.access import restrictions
from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.request import FhirRequest
from fhir_server.store.base import StoreTx


def criteria_pairs(res_type: str, criteria: str) -> list[tuple[str, str]]:
    """Query pairs of `identifier=x` or `Patient?identifier=x` (If-None-Exist, Bundle urls)."""
    text = criteria.strip()
    if "?" in text:
        head, _, text = text.partition("?")
        if head.strip("/") and head.strip("/").split("/")[-1] != res_type:
            raise FhirError.of(400, "invalid", f"Criteria '{criteria}' are not for {res_type}")
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise FhirError.of(
            412, "invalid", f"Conditional {res_type} interaction needs search criteria"
        )
    return pairs


def matching_ids(ctx: Context, tx: StoreTx, res_type: str, criteria: str) -> list[str]:
    """Ids of current `res_type` resources matching `criteria`, holding a lock on the criteria
    so two conditional writes with the same criteria cannot both create."""
    pairs = criteria_pairs(res_type, criteria)
    tx.lock(f"conditional:{res_type}?{sorted(pairs)}")
    # a caller restricted to some resources (fhir_server.access) matches only among those
    found = ctx.search_engine.find_ids(
        tx, res_type, pairs, restriction=restrictions(ctx, ctx.request, "search"))
    return [rid for _pk, rid in found]


def criteria_of(req: FhirRequest) -> str:
    """The search criteria of a conditional update/delete/patch URL (format params left out)."""
    return urlencode([(k, v) for k, v in req.query if k not in ("_format", "_pretty")])
