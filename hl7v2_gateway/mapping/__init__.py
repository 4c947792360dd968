"""Mapping modules: one per message type and trigger events, each registered with `@maps`.

A module turns a parsed message into a Plan (hl7v2_gateway.plan); adding a trigger event is
adding one module (or one line to a module's event table). The maps follow HL7's v2-to-FHIR IG
(https://build.fhir.org/ig/HL7/v2-to-fhir/): message maps for ADT, SIU, ORU, RDE, OMP and MDM,
and its segment maps (PID[Patient], PV1[Encounter], NK1[RelatedPerson], IN1[Coverage],
OBX[Observation], OBR[DiagnosticReport], SCH[Appointment], RXE/RXO[MedicationRequest],
TXA[DocumentReference])."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from hl7v2_gateway.datatypes import Mapper
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.plan import Plan
from hl7v2_gateway.settings import GatewaySettings


@dataclass
class Source:
    """One message being mapped: the message, the data type mapper, the plan being filled."""

    msg: Message
    m: Mapper
    plan: Plan = field(default_factory=Plan)

    @property
    def event(self) -> str:
        return self.msg.trigger_event


MapFn = Callable[[Source], None]
_MAPPERS: dict[tuple[str, str], MapFn] = {}


def maps(message_type: str, *events: str) -> Callable[[MapFn], MapFn]:
    """Register the decorated function for these trigger events of `message_type`."""

    def register(fn: MapFn) -> MapFn:
        for ev in events:
            key = (message_type, ev)
            if key in _MAPPERS:
                raise ValueError(f"{message_type}^{ev} is mapped twice")
            _MAPPERS[key] = fn
        return fn

    return register


@cache
def _load() -> None:
    import hl7v2_gateway.mapping as pkg

    for info in pkgutil.iter_modules(pkg.__path__, "hl7v2_gateway.mapping."):
        if not info.name.endswith((".segments", ".common")):
            importlib.import_module(info.name)


def supported() -> list[tuple[str, str]]:
    """Every (message type, trigger event) with a mapping."""
    _load()
    return sorted(_MAPPERS)


def mapper_for(msg: Message) -> MapFn:
    """The mapping of this message's type and event, or the AR that says it has none
    (200 unsupported message type, 201 unsupported event code)."""
    _load()
    mtype, event = msg.message_type, msg.trigger_event
    fn = _MAPPERS.get((mtype, event))
    if fn is not None:
        return fn
    if not mtype:
        raise Hl7Error(101, "MSH-9 (message type) is required", "MSH", 1, 9, reject=True)
    if not any(t == mtype for t, _ in _MAPPERS):
        known = ", ".join(sorted({t for t, _ in _MAPPERS}))
        raise Hl7Error(200, f"Message type {mtype} is not accepted (accepted: {known})", "MSH",
                       1, 9, 1)
    events = " ".join(sorted(e for t, e in _MAPPERS if t == mtype))
    raise Hl7Error(201, f"Trigger event {mtype}^{event or '(none)'} is not accepted "
                        f"(accepted {mtype} events: {events})", "MSH", 1, 9, 2)


def map_message(msg: Message, settings: GatewaySettings) -> Plan:
    """The Plan of `msg`; raises Hl7Error (AE/AR) when it cannot be mapped."""
    fn = mapper_for(msg)
    src = Source(msg, Mapper(settings, msg.sending_facility))
    from hl7v2_gateway.mapping.common import message_time

    src.plan.message_time_us = message_time(src)
    fn(src)
    return src.plan
