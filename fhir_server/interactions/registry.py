"""The interactions this server performs: the dispatcher routes through this table and the
CapabilityStatement is generated from it (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.context import Context
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.routing import Route

Handler = Callable[[Context, FhirRequest, Route], FhirResponse]


@dataclass(frozen=True)
class Interaction:
    """One route interaction, the codes it has in CapabilityStatement.rest, and level."""

    name: str
    capability_codes: tuple[str, ...]
    level: str  # "type" (rest.resource.interaction) or "system" (rest.interaction)
    handler: Handler


def _table() -> dict[str, Interaction]:
    from fhir_server.interactions import (
        bundle,
        create,
        delete,
        history,
        operation,
        patch,
        read,
        search_routes,
        update,
    )

    items = [
        Interaction("read", ("read",), "type", read.read),
        Interaction("vread", ("vread",), "type", read.vread),
        Interaction("update", ("update",), "type", update.update),
        Interaction("conditional-update", (), "type", update.conditional_update),
        Interaction("patch", ("patch",), "type", patch.patch),
        Interaction("conditional-patch", (), "type", patch.conditional_patch),
        Interaction("delete", ("delete",), "type", delete.delete),
        Interaction("conditional-delete", (), "type", delete.conditional_delete),
        Interaction("history-instance", ("history-instance",), "type", history.history),
        Interaction("history-type", ("history-type",), "type", history.history),
        Interaction("create", ("create",), "type", create.create),
        Interaction("search-type", ("search-type",), "type", search_routes.search_type),
        Interaction("search-compartment", (), "type", search_routes.search_compartment),
        Interaction("bundle", ("transaction", "batch"), "system", bundle.process_bundle),
        Interaction("search-system", ("search-system",), "system", search_routes.search_system),
        Interaction("history-system", ("history-system",), "system", history.history),
        Interaction("operation", (), "system", operation.operation),
    ]
    return {i.name: i for i in items}


_INTERACTIONS: dict[str, Interaction] | None = None


def interactions() -> dict[str, Interaction]:
    """Every interaction by route name."""
    global _INTERACTIONS
    if _INTERACTIONS is None:
        _INTERACTIONS = _table()
    return _INTERACTIONS
