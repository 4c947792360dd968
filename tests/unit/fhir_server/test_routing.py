"""Routing of the R4 RESTful interactions (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.routing import route


@pytest.mark.parametrize(
    ("method", "path", "interaction", "res_type", "res_id", "version"),
    [
        ("GET", "metadata", "capabilities", None, None, None),
        ("POST", "", "bundle", None, None, None),
        ("GET", "", "search-system", None, None, None),
        ("POST", "_search", "search-system", None, None, None),
        ("GET", "_history", "history-system", None, None, None),
        ("GET", "Patient", "search-type", "Patient", None, None),
        ("POST", "Patient", "create", "Patient", None, None),
        ("PUT", "Patient", "conditional-update", "Patient", None, None),
        ("DELETE", "Patient", "conditional-delete", "Patient", None, None),
        ("PATCH", "Patient", "conditional-patch", "Patient", None, None),
        ("POST", "Patient/_search", "search-type", "Patient", None, None),
        ("GET", "Patient/_history", "history-type", "Patient", None, None),
        ("GET", "Patient/1", "read", "Patient", "1", None),
        ("HEAD", "Patient/1", "read", "Patient", "1", None),
        ("PUT", "Patient/1", "update", "Patient", "1", None),
        ("PATCH", "Patient/1", "patch", "Patient", "1", None),
        ("DELETE", "Patient/1", "delete", "Patient", "1", None),
        ("GET", "Patient/1/_history", "history-instance", "Patient", "1", None),
        ("GET", "Patient/1/_history/3", "vread", "Patient", "1", "3"),
        ("GET", "Patient/1/Observation", "search-compartment", "Patient", "1", None),
        ("GET", "Patient/1/*", "search-compartment", "Patient", "1", None),
        ("POST", "Patient/$validate", "operation", "Patient", None, None),
    ],
)
def test_routes(method: str, path: str, interaction: str, res_type: str | None,
                res_id: str | None, version: str | None) -> None:
    r = route(method, path)
    assert (r.interaction, r.res_type, r.res_id, r.version) == (
        interaction, res_type, res_id, version)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "Patientx", 404),
        ("GET", "Patient/a_b", 400),
        ("GET", "Patient/" + "a" * 65, 400),
        ("POST", "Patient/1", 405),
        ("DELETE", "metadata", 404),
        ("GET", "Patient/1/_history/2/extra", 405),
    ],
)
def test_bad_routes(method: str, path: str, status: int) -> None:
    with pytest.raises(FhirError) as err:
        route(method, path)
    assert err.value.status == status
    assert err.value.outcome()["resourceType"] == "OperationOutcome"
