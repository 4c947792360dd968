"""`telefhir hl7 listen`: the MLLP listener process (asyncio), its inbox writer, the inbox
processor and the outbound sender, over one store.

On start the processor first applies whatever the inbox holds as pending (messages
acknowledged before a crash), then every message committed after. SIGTERM or SIGINT stops
accepting connections, lets each connection finish the message it is handling, commits what is
queued and stops the threads: nothing acknowledged is left half-done (a pending row is simply
applied at the next start)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from fhir_server.app import build_context, open_store
from fhir_server.config import Config
from hl7v2_gateway.gateway import Gateway
from hl7v2_gateway.listener import InboxWriter, MllpListener
from hl7v2_gateway.settings import GatewaySettings
from hl7v2_gateway.warmup import freeze_heap, warm_decide, warm_up

log = logging.getLogger("telefhir.hl7")


def _redact(url: str) -> str:
    """`url` without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _set_parent_death_signal() -> None:
    """Ask Linux to kill this process when its parent dies (even by kill -9)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def process_forever(db_url: str, settings: GatewaySettings, wake: Any, waiting: Any,
                    stop: Any, parent: int, ready: Any = None) -> None:
    """The inbox processor process: applies pending rows until `stop` is set, woken by
    `wake` after each inbox commit of the listener (and every second regardless, for rows
    recorded by other processes and nodes). `ready` is set once it is warm (warmup.py)."""
    _set_parent_death_signal()
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the listener stops us through `stop`
    store = open_store(db_url)
    store.defer_checkpoints()  # SQLite: checkpoints run here, between transactions
    ctx = build_context(Config.from_env(db_url=db_url), store)
    gateway = Gateway(ctx, settings)
    warm_up(ctx, settings)
    freeze_heap()
    if ready is not None:
        ready.set()
    busy = _SharedFlag(waiting, wake)
    try:
        while not stop.is_set():
            wake.wait(1.0)
            wake.clear()
            try:
                since_checkpoint = 0
                while not stop.is_set():
                    busy.yielded = False
                    handled = gateway.process_pending(20, busy)
                    since_checkpoint += handled
                    if not handled or since_checkpoint >= 8:
                        store.checkpoint()
                        since_checkpoint = 0
                    if not handled:
                        break
                    if busy.yielded:
                        # hand the write lock over: let the inbox writer, which waits for it,
                        # commit before the next transaction here (flock(2) would otherwise
                        # let this process take the lock again before the waiter runs)
                        wake.wait(HANDOFF_WAIT)
                        wake.clear()
            except Exception:
                log.exception("inbox processing failed; retrying")
                stop.wait(1.0)
    finally:
        store.close()


WARM_WAIT = 30.0
"""How long the listener waits for the processor to warm up before it listens anyway (s)."""
HANDOFF_WAIT = 0.1
"""How long the processor, after committing early for waiting ACKs, waits for the inbox
writer's commit before it takes the write lock again (s)."""


class _SharedFlag:
    """`should_yield` for the processor process: set by the listener while messages wait
    to be recorded (on SQLite they need the write lock the processor holds). When it says
    yield, it clears `wake` while the processor still holds the lock, so that the next `wake`
    is the inbox writer's commit after it (`yielded` tells the loop to wait for it)."""

    def __init__(self, event: Any, wake: Any) -> None:
        self.event = event
        self.wake = wake
        self.yielded = False

    def __call__(self) -> bool:
        if self.event.is_set():
            self.wake.clear()
            self.yielded = True
            return True
        return False


async def serve_mllp(db_url: str, host: str, port: int, settings: GatewaySettings,
                     ready: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    store = open_store(db_url)
    store.defer_checkpoints()  # SQLite: the inbox commits that ACKs wait for never checkpoint
    ctx = build_context(Config.from_env(db_url=db_url), store)
    gateway = Gateway(ctx, settings)
    warm_decide(gateway)
    freeze_heap()
    # The processor runs in a process of its own: applying messages is CPU work that would
    # otherwise hold the GIL against the event loop and delay ACKs.
    mp = multiprocessing.get_context("spawn")
    wake, waiting, stop_proc, warm = mp.Event(), mp.Event(), mp.Event(), mp.Event()
    child = mp.Process(target=process_forever, args=(db_url, settings, wake, waiting,
                                                     stop_proc, os.getpid(), warm),
                       name="telefhir-hl7-processor", daemon=True)
    child.start()
    # accept connections once the processor is warm: its first apply, with the write lock
    # held, would otherwise hold up the first ACKs (bounded: a processor that is slow to
    # start delays nothing but its own work)
    await asyncio.get_running_loop().run_in_executor(None, warm.wait, WARM_WAIT)
    writer = InboxWriter(gateway, on_commit=wake.set, waiting=(waiting.set, waiting.clear))
    from hl7v2_gateway.sender import OutboxSender

    sender = OutboxSender(ctx, settings)
    listener = MllpListener(gateway, writer, host, port)
    bound = await listener.start()
    sender.start()
    wake.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"telefhir MLLP listener on {host}:{bound} (store {_redact(db_url)})",
          file=sys.stderr, flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("MLLP listener stopping")
    await listener.close()
    writer.close()
    stop_proc.set()
    wake.set()
    child.join(60)
    sender.stop()
    store.close()


def run(db_url: str, host: str, port: int, config: str | None = None) -> None:
    """The listener process's entry point (`telefhir hl7 listen`, and the MLLP child of
    `telefhir serve`): settings from `config` (or TELEFHIR_HL7_CONFIG), until SIGTERM/SIGINT."""
    from hl7v2_gateway.settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve_mllp(db_url, host, port, load_settings(config)))
