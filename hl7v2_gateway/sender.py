"""The outbound MLLP sender: for each configured endpoint, the oldest pending outbox message is
framed, sent, and its ACK read and checked (MSA-1 AA or CA: sent; AE or CE: failed, the
receiver refused the content; AR, CR, no answer or no connection: retried with exponential
backoff, `outbound_backoff` doubling up to 5 minutes, until `outbound_retry_max` attempts)."""

from __future__ import annotations

import logging
import socket
import threading

from fhir_server.context import Context
from fhir_server.timeutil import now_us
from hl7v2_gateway import outbox
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.mllp import Frame, MllpFramer, frame
from hl7v2_gateway.settings import Endpoint, GatewaySettings

log = logging.getLogger("telefhir.hl7")
LEASE_US = 120_000_000


class SendFailed(Exception):
    def __init__(self, text: str, final: bool = False, ack_code: str | None = None) -> None:
        super().__init__(text)
        self.final = final
        self.ack_code = ack_code


def send_message(ep: Endpoint, text: str, timeout: float = 30.0) -> str:
    """Send one message to `ep` and return the ACK's MSA-1; SendFailed otherwise."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as sock:
            sock.sendall(frame(text.encode("utf-8")))
            framer = MllpFramer()
            while True:
                data = sock.recv(65536)
                if not data:
                    raise SendFailed("the connection closed before an ACK arrived")
                for ev in framer.feed(data):
                    if isinstance(ev, Frame):
                        return _ack_code(ev.data)
    except OSError as exc:
        raise SendFailed(f"{ep.host}:{ep.port}: {exc}") from exc


def _ack_code(data: bytes) -> str:
    try:
        msg = Message.parse(data.decode("utf-8", errors="replace"))
    except Hl7Error as exc:
        raise SendFailed(f"the answer is not an HL7 ACK: {exc}") from exc
    msa = msg.first("MSA")
    code = (msa.value(1) or "").upper() if msa is not None else ""
    if code in ("AA", "CA"):
        return code
    err = msa.value(3) if msa is not None else None
    if code in ("AE", "CE"):
        raise SendFailed(f"the receiver answered {code}: {err or 'no text'}", True, code)
    raise SendFailed(f"the receiver answered {code or 'no MSA'}: {err or 'no text'}", False,
                     code or None)


class OutboxSender:
    """A thread that delivers the outbox of every configured endpoint."""

    def __init__(self, ctx: Context, settings: GatewaySettings, poll: float = 0.5) -> None:
        self.ctx = ctx
        self.settings = settings
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl7-sender", daemon=True)

    def start(self) -> None:
        if self.settings.outbound:
            outbox_tables = outbox.outbox_ddl(self.ctx.store)
            self.ctx.store.ensure_tables(outbox_tables)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for ep in self.settings.outbound:
                try:
                    busy = self.deliver_one(ep) or busy
                except Exception:
                    log.exception("outbound delivery to %s failed", ep.name)
            if not busy:
                self._stop.wait(self.poll)

    def deliver_one(self, ep: Endpoint) -> bool:
        """Send the next due message of `ep`; whether there was one."""
        with self.ctx.store.transaction() as tx:
            row = outbox.next_due(tx, ep.name, now_us(), LEASE_US)
        if row is None:
            return False
        try:
            code = send_message(ep, row.message)
        except SendFailed as exc:
            final = exc.final or row.attempts >= self.settings.outbound_retry_max
            delay = min(300.0, self.settings.outbound_backoff * 2 ** (row.attempts - 1))
            with self.ctx.store.transaction() as tx:
                outbox.mark_retry(tx, row.id, str(exc), now_us() + int(delay * 1e6), final,
                                  exc.ack_code)
            log.info("outbound %s #%d to %s: %s%s", row.event, row.id, ep.name, exc,
                     " (failed)" if final else f" (retry in {delay:g} s)")
            return True
        with self.ctx.store.transaction() as tx:
            outbox.mark_sent(tx, row.id, code)
        return True
