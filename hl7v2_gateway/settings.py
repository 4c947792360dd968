"""The gateway's configuration file (TOML): identifier systems for assigning authorities, the
time zone of senders, size and time limits, and the downstream endpoints of outbound messages.

Read from the file named by `--hl7-config` or TELEFHIR_HL7_CONFIG; every key has a default, so
the gateway runs without one. README.md ("HL7 v2 gateway") documents each key."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hl7v2_gateway.timefmt import zone

DEFAULT_SYSTEM_BASE = "https://telefhir.org/fhir/sid/hl7v2/"
"""Identifier.system of an assigning authority the configuration does not name and that has no
OID/UUID/URI: this base followed by the authority's namespace id (URL-quoted)."""


@dataclass(frozen=True)
class Endpoint:
    """A downstream system that receives our outbound SIU/ADT messages over MLLP."""

    name: str
    host: str
    port: int
    events: tuple[str, ...] = ("appointment", "encounter")
    receiving_application: str = ""
    receiving_facility: str = ""
    version: str = "2.5.1"


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway reads from its configuration file."""

    application: str = "telefhir"  # our MSH-3/MSH-4 when the sender left MSH-5/6 empty
    facility: str = ""
    timezone: str = "UTC"  # zone of v2 times written without an offset
    max_message_bytes: int = 8 * 1024 * 1024
    idle_timeout: float = 300.0  # seconds a connection may stay silent
    identifier_systems: dict[str, str] = field(default_factory=dict)
    default_system_base: str = DEFAULT_SYSTEM_BASE
    outbound: tuple[Endpoint, ...] = ()
    outbound_retry_max: int = 10  # attempts before a message is marked failed
    outbound_backoff: float = 1.0  # seconds before the first retry; doubles each time

    @property
    def tz(self) -> tzinfo:
        return zone(self.timezone)

    def identifier_system(self, namespace: str | None, universal: str | None,
                          universal_type: str | None) -> str | None:
        """The Identifier.system for an assigning authority (HD: namespace id, universal id,
        universal id type), following the v2-to-FHIR IG HD[Identifier-Assigner] map: a
        configured system first, then urn:oid: for ISO OIDs, urn:uuid: for UUIDs, the URI
        itself for URI/URL, then the default base + namespace id."""
        for key in (namespace, universal):
            if key and key in self.identifier_systems:
                return self.identifier_systems[key]
        utype = (universal_type or "").upper()
        if universal:
            if utype == "ISO" or (not utype and _looks_like_oid(universal)):
                return f"urn:oid:{universal}"
            if utype == "UUID":
                return f"urn:uuid:{universal.lower()}"
            if utype in ("URI", "URL"):
                return universal
        if namespace:
            return self.default_system_base + quote(namespace, safe="")
        if universal:
            return self.default_system_base + quote(universal, safe="")
        return None


def _looks_like_oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 2 and all(p.isdigit() for p in parts)


def load_settings(path: str | Path | None = None) -> GatewaySettings:
    """Settings from `path` (or TELEFHIR_HL7_CONFIG); defaults when neither is given."""
    path = path or os.environ.get("TELEFHIR_HL7_CONFIG")
    if not path:
        return GatewaySettings()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"HL7 configuration {path}: {exc}") from exc
    return settings_from(data)


def settings_from(data: dict[str, Any]) -> GatewaySettings:
    """Settings from the parsed TOML document."""
    known = {"application", "facility", "timezone", "max_message_bytes", "idle_timeout",
             "identifier_systems", "default_system_base", "outbound", "outbound_retry_max",
             "outbound_backoff"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"HL7 configuration: unknown keys {sorted(unknown)}")
    values = {k: v for k, v in data.items() if k != "outbound"}
    endpoints = []
    for i, ep in enumerate(data.get("outbound") or []):
        try:
            endpoints.append(Endpoint(
                name=str(ep.get("name") or f"endpoint{i + 1}"), host=str(ep["host"]),
                port=int(ep["port"]), events=tuple(ep.get("events") or ("appointment",
                                                                         "encounter")),
                receiving_application=str(ep.get("receiving_application", "")),
                receiving_facility=str(ep.get("receiving_facility", "")),
                version=str(ep.get("version", "2.5.1"))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"HL7 configuration: outbound[{i}] needs host and port ({exc})"
                             ) from exc
    try:
        settings = GatewaySettings(**values, outbound=tuple(endpoints))
        settings.tz  # noqa: B018 - fail now on an unknown zone
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"HL7 configuration: {exc}") from exc
    return settings
