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
    # TELEFHIR_INTAKE_QUESTIONNAIRES: "system|code=Questionnaire canonical" pairs (visit type
    # of appointmentType/serviceType -> the intake form check-in requires), comma-separated;
    # "*=canonical" requires it of every virtual visit
    intake: tuple[tuple[str, str], ...] = ()
    heartbeat_gone_s: int = 30  # TELEFHIR_HEARTBEAT_GONE: no ping for this long: gone
    queue_poll_s: float = 1.0  # TELEFHIR_QUEUE_POLL: how often a live stream re-reads the store
    stream_s: int = 300  # TELEFHIR_STREAM_SECONDS: a live stream's life (then reconnect)
    streams: int = 4  # TELEFHIR_STREAMS: live streams one server process holds at once

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
            intake=tuple((k.strip(), v.strip()) for k, _, v in (
                pair.partition("=") for pair in _list("TELEFHIR_INTAKE_QUESTIONNAIRES"))
                if k.strip() and v.strip()),
            heartbeat_gone_s=int(env.get("TELEFHIR_HEARTBEAT_GONE", cls.heartbeat_gone_s)),
            queue_poll_s=float(env.get("TELEFHIR_QUEUE_POLL", cls.queue_poll_s)),
            stream_s=int(env.get("TELEFHIR_STREAM_SECONDS", cls.stream_s)),
            streams=int(env.get("TELEFHIR_STREAMS", cls.streams)),
        )


@cache
def settings() -> VisitSettings:
    """The process's visit settings (read once)."""
    return VisitSettings.from_env()
