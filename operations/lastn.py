"""`Observation/$lastn`: the most recent Observations per code
(https://hl7.org/fhir/R4/observation-operation-lastn.html).

The Observation search parameters are the filters (parsed and applied in SQL like any search,
with the caller's access restrictions); `max` (default 1) says how many per code group. The
answer is a searchset Bundle, groups in code order, each newest first (ties kept); the grouping
and ranking are fhir_server.search.lastn. Invoked at type level (GET or POST) and, as fhirpy
does, inside a patient's compartment: `Patient/[id]/Observation/$lastn`."""

from __future__ import annotations

from fhir_server.access import restrictions
from fhir_server.errors import FhirError
from fhir_server.interactions.search import searchset
from fhir_server.request import FhirResponse
from fhir_server.search.parse import parse_search
from operations.registry import OperationCall, operation

NOT_TAKEN = ("_sort", "_count", "_cursor", "_total")
"""Result parameters $lastn decides itself: the order, and the whole answer in one page."""


def _criteria_codes(call: OperationCall, names: list[str]) -> None:
    """The request SHALL name a subject and a category or code (the definition's comment)."""
    subject = call.compartment is not None or any(n in ("patient", "subject") for n in names)
    if not subject:
        raise FhirError.of(400, "required", "$lastn needs a subject: the 'patient' or 'subject' "
                           "search parameter (or Patient/[id]/Observation/$lastn)", "patient")
    if not any(n == "category" or "code" in n for n in names):
        raise FhirError.of(400, "required", "$lastn needs a 'category' parameter or a code "
                           "parameter ('code', 'combo-code', 'code-value-concept', ...)",
                           "category")


@operation("OperationDefinition-Observation-lastn", needs=("{type}.rs",), search_params=True)
def lastn(call: OperationCall) -> FhirResponse:
    """The newest `max` matches per code, as a searchset Bundle."""
    ctx, req = call.ctx, call.req
    for name, _ in call.params.search:
        if name.partition(":")[0] in NOT_TAKEN:
            raise FhirError.of(400, "not-supported",
                               f"$lastn orders and limits its answer itself; it takes no "
                               f"'{name}'", name)
    max_per_code = int(call.params.get("max", 1))
    shaping = [(k, v) for k, v in req.query if k in ("_summary", "_elements")]
    sr = parse_search(
        "Observation", call.params.search + shaping, req.prefer.get("handling") == "strict",
        call.compartment, req.base_url,
        default_count=ctx.config.default_page_size, max_count=ctx.config.max_page_size,
    )
    _criteria_codes(call, [getattr(c, "code", "").partition(".")[0] for c in sr.criteria])
    sr.restriction = restrictions(ctx, req, "search")
    sr.include_restriction = restrictions(ctx, req, "read")
    source = ctx.tx if ctx.tx is not None else ctx.store
    result = ctx.search_engine.last_n(source, sr, max_per_code)
    path = "Observation/$lastn"
    if call.compartment is not None:
        path = f"{call.compartment[0]}/{call.compartment[1]}/{path}"
    given = [("max", str(max_per_code))] if "max" in call.params else []
    bundle = searchset(req, "Observation", None, result, source, path, given + sr.applied)
    return FhirResponse(200, resource=bundle)
