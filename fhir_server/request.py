"""Framework-free request and response objects.

The dispatcher turns a FhirRequest into a FhirResponse; only fhir_server.web knows Flask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.principal import Principal


@dataclass
class FhirRequest:
    """One HTTP request against the FHIR base, as the dispatcher sees it."""

    method: str  # GET, POST, PUT, PATCH, DELETE, HEAD
    path: str  # path below the FHIR base, without leading slash: "Patient/123/_history/2"
    query: list[tuple[str, str]] = field(default_factory=list)  # decoded, in order
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    base_url: str = "http://localhost:8080/fhir"  # absolute base URL, no trailing slash
    principal: Principal | None = None  # who is asking: set by the authentication hook
    remote_addr: str | None = None  # the client's IP address, for audit
    # False: the audit trail does not record this request, because its caller already had the
    # same query recorded (a live stream re-reading what it showed: smart_apps.video)
    audited: bool = True
    # fhir_server.access.restrictions computed for this request, by action
    restrictions: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """First query parameter of that name."""
        for k, v in self.query:
            if k == name:
                return v
        return None

    @property
    def prefer(self) -> dict[str, str]:
        """The Prefer header as a dict (https://hl7.org/fhir/R4/http.html#ops)."""
        out: dict[str, str] = {}
        raw = self.header("prefer") or ""
        for part in raw.replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            k, _, v = part.partition("=")
            out[k.strip().lower()] = v.strip().strip('"')
        return out


@dataclass
class FhirResponse:
    """What to answer. `resource` is a JSON-able dict; `raw` is pre-serialised JSON bytes
    (stored bodies are served as they are); at most one of them is set. A `raw` body with a
    non-JSON `Content-Type` header of its own is not FHIR (an operation's X12 or PDF answer)
    and is sent as it is (fhir_server.dispatcher.own_media). Interactions and hooks only ever
    see JSON; when the client asked for XML, the response `Dispatcher.handle` returns holds the
    XML document in `raw` (Content-Type application/fhir+xml or application/xml)."""

    status: int
    resource: dict[str, Any] | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
