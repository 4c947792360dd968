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
                    stop: Any, parent: int) -> None:
    """The inbox processor process: applies pending rows until `stop` is set, woken by
    `wake` after each inbox commit of the listener (and every second regardless, for rows
    recorded by other processes and nodes)."""
    _set_parent_death_signal()
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the listener stops us through `stop`
    store = open_store(db_url)
    ctx = build_context(Config.from_env(db_url=db_url), store)
    gateway = Gateway(ctx, settings)
    busy = _SharedFlag(waiting)
    try:
        while not stop.is_set():
            wake.wait(1.0)
            wake.clear()
            try:
                while not stop.is_set() and gateway.process_pending(20, busy):
                    pass
            except Exception:
                log.exception("inbox processing failed; retrying")
                stop.wait(1.0)
    finally:
        store.close()


class _SharedFlag:
    """`should_yield` for the processor process: set by the listener while messages wait
    to be recorded (on SQLite they need the write lock the processor holds)."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __call__(self) -> bool:
        return bool(self.event.is_set())


async def serve_mllp(db_url: str, host: str, port: int, settings: GatewaySettings,
                     ready: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    store = open_store(db_url)
    ctx = build_context(Config.from_env(db_url=db_url), store)
    gateway = Gateway(ctx, settings)
    # The processor runs in a process of its own: applying messages is CPU work that would
    # otherwise hold the GIL against the event loop and delay ACKs.
    mp = multiprocessing.get_context("spawn")
    wake, waiting, stop_proc = mp.Event(), mp.Event(), mp.Event()
    child = mp.Process(target=process_forever, args=(db_url, settings, wake, waiting,
                                                     stop_proc, os.getpid()),
                       name="telefhir-hl7-processor", daemon=True)
    child.start()
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
