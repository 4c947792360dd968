"""Warming the inbox processor before the listener accepts connections.

The first message a fresh process applies imports and builds the dispatcher's interaction,
search and patch modules on first use (80-200 ms on the benchmark's machine, bench/README.md).
Applied with the database write lock held, that first message would hold up the ACKs of every
connection (on SQLite the inbox insert needs the same lock). So the processor applies one small
ADT^A01 and one ORU^R01 here, inside a store transaction that is always rolled back: nothing is
stored, and the caches are warm before the first real message. The listener likewise decides
their ACKs once (nothing recorded) before it accepts."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from fhir_server.context import Context
from hl7v2_gateway.apply import Applier
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.mapping import map_message
from hl7v2_gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from hl7v2_gateway.gateway import Gateway

log = logging.getLogger("telefhir.hl7")

SAMPLES = (
    "MSH|^~\\&|WARMUP|TELEFHIR|TELEFHIR|TELEFHIR|20240101120000+0000||ADT^A01|WARM-1|P|2.5.1\r"
    "EVN|A01|20240101120000+0000\r"
    "PID|1||WARM0001^^^WARMUP^MR||Warm^Up||19700101|F|||1 Main St^^Town^^00000\r"
    "PV1|1|I|W^1^1||||1234^Doe^Jane|||||||||||WARMV1^^^WARMUP^VN\r",
    "MSH|^~\\&|WARMUP|TELEFHIR|TELEFHIR|TELEFHIR|20240101120100+0000||ORU^R01|WARM-2|P|2.5.1\r"
    "PID|1||WARM0001^^^WARMUP^MR||Warm^Up||19700101|F\r"
    "OBR|1||WARMF1^WARMUP|718-7^Hemoglobin^LN|||20240101115000+0000\r"
    "OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL|12.0-16.0|N|||F|||20240101115000+0000\r"
    "OBX|2|ST|8251-1^Comment^LN||warm||||||F\r",
)


class _RolledBack(Exception):
    """Raised to end the warm-up transaction with a ROLLBACK."""


def warm_up(ctx: Context, settings: GatewaySettings) -> None:
    """Map and apply SAMPLES in one store transaction, then roll it back. A failure is logged
    and ignored: warming is an optimisation, the processor works without it."""
    try:
        plans = [map_message(Message.parse(text), settings) for text in SAMPLES]
        with ctx.store.transaction() as tx:
            for plan in plans:
                Applier(ctx, tx).apply(plan)
            raise _RolledBack
    except _RolledBack:
        pass
    except Exception:
        log.warning("warming the inbox processor failed; going on without", exc_info=True)


def warm_decide(gateway: Gateway) -> None:
    """Decide the ACK of SAMPLES once (parse, map, validate; nothing recorded), so that the
    listener's first real message does not pay for the mapping modules' first use."""
    try:
        for text in SAMPLES:
            gateway.decide(text.encode(), None)
    except Exception:
        log.warning("warming the MLLP listener failed; going on without", exc_info=True)


def freeze_heap() -> None:
    """Move what start-up and warming allocated (modules, the FHIR definitions, search
    parameter tables: long-lived) out of the garbage collector's reach (gc.freeze,
    https://docs.python.org/3/library/gc.html#gc.freeze), so that a full collection, which
    may run in the middle of an apply holding the write lock, walks only what messages made."""
    gc.collect()
    gc.freeze()
