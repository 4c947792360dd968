"""Settings of telehealth visits, from TELEFHIR_* environment variables (which `telefhir
serve` sets from its options): where the media service is, how long join links live, who may
be in a room, which ICE servers participants use, and which visit types are virtual."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


@dataclass(frozen=True)
class VisitSettings:
    media_url: str = "http://127.0.0.1:8081/media"  # TELEFHIR_MEDIA_URL
    link_ttl_s: int = 15 * 60  # TELEFHIR_VISIT_LINK_TTL: time to redeem a join link
    token_ttl_s: int = 4 * 3600  # TELEFHIR_MEDIA_TOKEN_TTL: a redeemed link's media token
    room_capacity: int = 2  # TELEFHIR_ROOM_CAPACITY: participants a room holds
    ice_servers: tuple[str, ...] = ()  # TELEFHIR_ICE_SERVERS: stun:/turn: URLs, comma-separated
    # TELEFHIR_VIRTUAL_VISIT_TYPES: "system|code" of Appointment.appointmentType/serviceType
    # codings that mark a visit as virtual (Epic-style visit types), comma-separated
    virtual_types: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> VisitSettings:
        env = os.environ
        return cls(
            media_url=env.get("TELEFHIR_MEDIA_URL", cls.media_url).rstrip("/"),
            link_ttl_s=int(env.get("TELEFHIR_VISIT_LINK_TTL", cls.link_ttl_s)),
            token_ttl_s=int(env.get("TELEFHIR_MEDIA_TOKEN_TTL", cls.token_ttl_s)),
            room_capacity=int(env.get("TELEFHIR_ROOM_CAPACITY", cls.room_capacity)),
            ice_servers=_list("TELEFHIR_ICE_SERVERS"),
            virtual_types=_list("TELEFHIR_VIRTUAL_VISIT_TYPES"),
        )


@cache
def settings() -> VisitSettings:
    """The process's visit settings (read once)."""
    return VisitSettings.from_env()
