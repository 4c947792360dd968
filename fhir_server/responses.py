"""Answers about one resource version: ETag, Last-Modified, Location and Prefer return
(https://hl7.org/fhir/R4/http.html#versioning, https://hl7.org/fhir/R4/http.html#ops)."""

from __future__ import annotations

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.request import FhirRequest, FhirResponse
from fhir_server.store.base import StoredResource
from fhir_server.timeutil import to_http_date


def etag(version: int) -> str:
    """Weak ETag of a version."""
    return f'W/"{version}"'


def parse_etag(value: str) -> int | None:
    """Version number of a `W/"n"` (or `"n"`, or bare n) ETag, or None."""
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    return int(v) if v.isdigit() else None


def version_headers(req: FhirRequest, stored: StoredResource) -> dict[str, str]:
    """ETag, Last-Modified and Content-Location of a stored version."""
    return {
        "ETag": etag(stored.version),
        "Last-Modified": to_http_date(stored.last_updated_us),
        "Content-Location": version_url(req.base_url, stored),
    }


def version_url(base_url: str, stored: StoredResource) -> str:
    """Absolute URL of one version."""
    return f"{base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"


def written(
    req: FhirRequest, stored: StoredResource, status: int, message: str
) -> FhirResponse:
    """The answer to a create or update, honouring `Prefer: return=`."""
    headers = version_headers(req, stored)
    if status == 201:
        headers["Location"] = headers["Content-Location"]
    want = req.prefer.get("return", "representation")
    if want == "minimal":
        return FhirResponse(status, headers=headers)
    if want.lower() == "operationoutcome":
        return FhirResponse(
            status, resource=operation_outcome([Issue("information", "informational", message)]),
            headers=headers,
        )
    return FhirResponse(status, raw=stored.body, headers=headers)


def gone(stored: StoredResource) -> FhirError:
    """410 for a read of a deleted resource."""
    err = FhirError.of(
        410, "deleted", f"{stored.res_type}/{stored.res_id} was deleted (version {stored.version})"
    )
    err.headers["ETag"] = etag(stored.version)
    return err


def not_found(res_type: str, res_id: str, version: str | None = None) -> FhirError:
    """404 for an unknown resource or version."""
    what = f"{res_type}/{res_id}" + (f"/_history/{version}" if version else "")
    return FhirError.of(404, "not-found", f"{what} is not known")
