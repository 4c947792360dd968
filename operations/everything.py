"""`Patient/$everything` and `Encounter/$everything`: a patient's (or an encounter's) record
(https://hl7.org/fhir/R4/patient-operation-everything.html,
https://hl7.org/fhir/R4/encounter-operation-everything.html).

The members of the compartment (the R4 Patient and Encounter CompartmentDefinitions, the
compartment's own resource included) are searched in SQL like any compartment search, with the
caller's access restrictions, and paged with the search engine's keyset cursors (`next` links
carry `_cursor`, so pages do not shift while others write). Each page includes the
Practitioners, Organizations, Locations, Medications (and the like, REFERENCED) that its
resources refer to, by the reference index, as `_include` does. `_since` keeps the resources
updated at or after an instant (meta.lastUpdated; included resources are context and not
filtered), `_type` the named types, `_count` sets the page size. At type level
(`Patient/$everything`) the members of every patient compartment the caller may see."""

from __future__ import annotations

from fhir_server.access import restrictions
from fhir_server.errors import FhirError
from fhir_server.interactions.search import searchset
from fhir_server.request import FhirResponse
from fhir_server.search.engine import SearchResult
from fhir_server.search.model import ANY_COMPARTMENT_ID, Include
from fhir_server.search.parse import parse_search
from operations.registry import OperationCall, operation
from resources.compartments import compartment_resource_types
from resources.types import is_resource_type

REFERENCED: dict[str, tuple[str, ...]] = {
    "Patient": ("Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
                "Device", "Substance"),
    "Encounter": ("Patient", "Practitioner", "PractitionerRole", "Organization", "Location",
                  "Medication", "Device", "Substance"),
}
"""The types included when a compartment member refers to them (the compartment holds the
references, not these shared resources)."""


def _types(call: OperationCall) -> tuple[str, ...] | None:
    """The `_type` values (repeated, or comma-separated), checked; None when not given."""
    given = call.params.all("_type")
    if not given:
        return None
    out: list[str] = []
    for value in given:
        for t in str(value).split(","):
            t = t.strip()
            if not t:
                continue
            if not is_resource_type(t):
                raise FhirError.of(400, "invalid", f"Unknown resource type '{t}' in _type",
                                   "_type")
            if t not in out:
                out.append(t)
    return tuple(out)


def _cursor(call: OperationCall) -> str | None:
    """The paging cursor of a `next`/`previous` link: the only other parameter taken."""
    cursor = None
    for name, value in call.params.search:
        if name != "_cursor":
            raise FhirError.of(400, "invalid", f"${call.op.code} has no parameter '{name}'",
                               name)
        cursor = value
    return cursor


def everything(call: OperationCall, comp_type: str) -> FhirResponse:
    """One page of the compartment of `call`'s instance (every compartment of `comp_type` at
    type level) with what its resources refer to."""
    ctx, req = call.ctx, call.req
    if call.compartment is not None:
        raise FhirError.of(400, "not-supported",
                           f"${call.op.code} is not invoked inside a compartment")
    for name in ("start", "end"):
        if name in call.params:
            raise FhirError.of(400, "not-supported",
                               f"${call.op.code} does not filter by care dates ('{name}'); "
                               "use _since or _type", name)
    types = _types(call)
    cursor = _cursor(call)
    if call.res_id is not None:
        call.target()  # 404 for an unknown, 410 for a deleted instance
    comp = (comp_type, call.res_id or ANY_COMPARTMENT_ID)
    pairs: list[tuple[str, str]] = []
    since = call.params.get("_since")
    if since is not None:
        pairs.append(("_lastUpdated", f"ge{since}"))
    if "_count" in call.params:
        pairs.append(("_count", str(call.params.get("_count"))))
    shaping = [(k, v) for k, v in req.query if k in ("_summary", "_elements")]
    pairs.extend(shaping)
    if cursor is not None:
        pairs.append(("_cursor", cursor))
    sr = parse_search(None, pairs, False, comp, req.base_url,
                      default_count=ctx.config.default_page_size,
                      max_count=ctx.config.max_page_size)
    sr.compartment_self = True
    members = compartment_resource_types(comp_type)
    sr.types = tuple(t for t in members if types is None or t in types)
    sr.includes = [Include("*", "*", t, False, False) for t in REFERENCED[comp_type]
                   if types is None or t in types]
    if call.res_id is None:
        sr.total = "none"  # every patient's record: counting it all is not worth it
    sr.restriction = restrictions(ctx, req, "search")
    sr.include_restriction = restrictions(ctx, req, "read")
    source = ctx.tx if ctx.tx is not None else ctx.store
    if sr.types:
        result = ctx.search_engine.execute(source, sr)
    else:  # _type named no member type: nothing matches, so nothing is included either
        result = SearchResult(request=sr, total=0 if call.res_id else None)
    path = f"{comp_type}/{call.res_id}/$everything" if call.res_id else f"{comp_type}/$everything"
    given: list[tuple[str, str]] = []
    if since is not None:
        given.append(("_since", str(since)))
    if types is not None:
        given.append(("_type", ",".join(types)))
    if "_count" in call.params:
        given.append(("_count", str(sr.count)))
    given.extend(shaping)
    bundle = searchset(req, comp_type, None, result, source, path, given)
    return FhirResponse(200, resource=bundle)


@operation("OperationDefinition-Patient-everything", needs=("{type}.rs",), search_params=True)
def patient_everything(call: OperationCall) -> FhirResponse:
    """A patient's record (instance level), or every patient's the caller may see (type)."""
    return everything(call, "Patient")


@operation("OperationDefinition-Encounter-everything", needs=("{type}.rs",), search_params=True)
def encounter_everything(call: OperationCall) -> FhirResponse:
    """An encounter's record: the members of its compartment and what they refer to."""
    return everything(call, "Encounter")
