"""A store per backend loaded once per module with official examples and Synthea patients,
for read-only search tests (`search_store`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.app import open_store
from fhir_server.store.base import ResourceStore
from tests.pg import pg_server
from tests.unit.search.support import EXAMPLES, put_all, synthea_resources

EXAMPLE_TYPES = (
    "Patient",
    "Practitioner",
    "Organization",
    "Observation",
    "Encounter",
    "Condition",
    "MedicationRequest",
    "Medication",
    "Provenance",
    "Group",
    "Location",
    "DiagnosticReport",
    "ValueSet",
    "Questionnaire",
    "QuestionnaireResponse",
    "RiskAssessment",
    "Specimen",
)


def example_resources() -> list[dict[str, Any]]:
    """Every official example file of EXAMPLE_TYPES (not Bundles), unique by type/id."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.name.split("-", 1)[0] not in EXAMPLE_TYPES:
            continue
        res = json.loads(path.read_text())
        if res.get("resourceType") in EXAMPLE_TYPES and "id" in res:
            out.setdefault((res["resourceType"], res["id"]), res)
    return list(out.values())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def search_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ResourceStore]:
    """A store with the official examples of EXAMPLE_TYPES and 3 Synthea patients' records."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("search") / "search.db"
        url = f"sqlite:///{path}"
    else:
        url = pg_server().new_database()
    store = open_store(url)
    put_all(store, example_resources())
    put_all(store, synthea_resources(3), start_us=1_700_000_000_000_000)
    yield store
    store.close()
