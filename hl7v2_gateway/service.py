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
import signal
import sys
import threading

from fhir_server.app import build_context, open_store
from fhir_server.config import Config
from hl7v2_gateway.gateway import Gateway
from hl7v2_gateway.listener import InboxWriter, MllpListener
from hl7v2_gateway.settings import GatewaySettings

log = logging.getLogger("telefhir.hl7")


class Processor:
    """A thread applying pending inbox rows, woken by each commit (and every `poll` seconds,
    for rows recorded by other processes or nodes)."""

    def __init__(self, gateway: Gateway, poll: float = 1.0, batch: int = 50) -> None:
        self.gateway = gateway
        self.poll = poll
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl7-processor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.gateway.process_pending(self.batch):
                    pass
            except Exception:
                log.exception("inbox processing failed; retrying")
                self._stop.wait(self.poll)


async def serve_mllp(db_url: str, host: str, port: int, settings: GatewaySettings,
                     ready: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    store = open_store(db_url)
    ctx = build_context(Config.from_env(db_url=db_url), store)
    gateway = Gateway(ctx, settings)
    processor = Processor(gateway)
    writer = InboxWriter(gateway, on_commit=processor.wake)
    from hl7v2_gateway.sender import OutboxSender

    sender = OutboxSender(ctx, settings)
    listener = MllpListener(gateway, writer, host, port)
    bound = await listener.start()
    processor.start()
    sender.start()
    processor.wake()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"telefhir MLLP listener on {host}:{bound} (store {db_url})", file=sys.stderr,
          flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("MLLP listener stopping")
    await listener.close()
    writer.close()
    processor.stop()
    sender.stop()
    store.close()
