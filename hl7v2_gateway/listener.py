"""The asyncio MLLP listener around the sans-IO framer.

Many connections at once; the messages of one connection are handled in order (the next one
is read only after the previous one's ACK is written). Every message is recorded by the
inbox writer, which commits all messages waiting from every connection in one transaction
(group commit), and its ACK is sent after that commit. A connection silent for `idle_timeout`
is closed (after an AR if a frame was left unfinished); a frame longer than
`max_message_bytes` is answered with an AR, recorded in the error queue and its bytes skipped
(MLLP release 2, https://www.hl7.org/implement/standards/product_brief.cfm?product_id=55).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from hl7v2_gateway.gateway import Decision, Gateway
from hl7v2_gateway.mllp import Frame, Garbage, MllpFramer, TooLarge, frame

log = logging.getLogger("telefhir.hl7")
COMMIT_ACK = frame(b"\x06")
"""MLLP release 2's commit acknowledgement block (<VT><ACK><FS><CR>): sent, once the message
is safe in the inbox, when MSH-15/MSH-16 ask for no HL7 acknowledgment, so that a sender
waiting for an answer is never left hanging."""


class InboxWriter:
    """One thread that commits the decisions of every connection in batches."""

    def __init__(self, gateway: Gateway, on_commit: Callable[[], None] | None = None,
                 max_batch: int = 200,
                 waiting: tuple[Callable[[], None], Callable[[], None]] | None = None
                 ) -> None:
        self.gateway = gateway
        self.on_commit = on_commit
        self.waiting = waiting  # (set, clear): tell the processor messages wait for the lock
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[Decision, Future[Decision]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hl7-inbox-writer", daemon=True)
        self._thread.start()

    def submit(self, d: Decision) -> Future[Decision]:
        fut: Future[Decision] = Future()
        if self.waiting is not None:
            self.waiting[0]()
        self._queue.put((d, fut))
        return fut

    def busy(self) -> bool:
        """Whether messages are waiting to be recorded."""
        return not self._queue.empty()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = self._drain(batch)
            self._commit(batch, stop)
            if self.waiting is not None and self._queue.empty():
                self.waiting[1]()

    def _drain(self, batch: list[tuple[Decision, Future[Decision]]]) -> bool:
        """Move what is queued into `batch` (up to max_batch); whether close() was asked."""
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False

    def _commit(self, batch: list[tuple[Decision, Future[Decision]]], stopping: bool) -> None:
        def more() -> list[Decision]:
            # the messages that came while this transaction waited for the write lock (on
            # SQLite, behind the processor's apply) join it: they wait one lock turn, not two
            start = len(batch)
            if not stopping and self._drain(batch):
                self._queue.put(None)  # close() came meanwhile: stop after this commit
            return [d for d, _ in batch[start:]]

        try:
            self.gateway.record([d for d, _ in batch], more)
        except Exception:
            # one at a time, so that one message the store refuses fails alone; a store that
            # is down gets a few tries, then no ACK leaves (the connection closes, the sender
            # sends again)
            for d, fut in batch:
                for attempt in range(4):
                    try:
                        self.gateway.record([d])
                        fut.set_result(d)
                        break
                    except Exception as exc:
                        if attempt == 3:
                            log.exception("recording a message failed")
                            fut.set_exception(exc)
                        else:
                            time.sleep(0.25 * (attempt + 1))
        else:
            for d, fut in batch:
                fut.set_result(d)
        if self.on_commit is not None:
            self.on_commit()


class MllpListener:
    """Accepts MLLP connections and answers each message once it is safe in the inbox."""

    def __init__(self, gateway: Gateway, writer: InboxWriter, host: str, port: int) -> None:
        self.gateway = gateway
        self.writer = writer
        self.host = host
        self.port = port
        s = gateway.settings
        self.max_message = s.max_message_bytes
        self.idle_timeout = s.idle_timeout
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> int:
        """Listen; the port bound (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; let each connection finish the message it is handling."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._conns:
            _, pending = await asyncio.wait(set(self._conns), timeout=grace)
            for t in pending:
                t.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer_info = writer.get_extra_info("peername")
        peer = f"{peer_info[0]}:{peer_info[1]}" if peer_info else None
        framer = MllpFramer(self.max_message)
        try:
            await self._connection(reader, writer, framer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("MLLP connection from %s failed", peer)
        finally:
            self._conns.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (ConnectionError, TimeoutError, asyncio.CancelledError):
                pass

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          framer: MllpFramer, peer: str | None) -> None:
        while not self._closing:
            try:
                data = await asyncio.wait_for(reader.read(256 * 1024), self.idle_timeout)
            except TimeoutError:
                if framer.in_frame:
                    await self._answer(writer, self.gateway.garbage(
                        b"", peer, f"The MLLP frame was not ended (no FS CR) within "
                                   f"{self.idle_timeout:g} s; the connection is closed"))
                return
            if not data:
                if framer.in_frame:
                    log.info("MLLP connection from %s closed inside a frame (%d bytes)", peer,
                             framer.pending)
                return
            for ev in framer.feed(data):
                if isinstance(ev, Frame):
                    await self._answer(writer, self.gateway.decide(ev.data, peer))
                elif isinstance(ev, Garbage):
                    if not ev.continued:
                        await self._answer(writer, self.gateway.garbage(
                            ev.data, peer, "Bytes outside an MLLP frame (a message starts with "
                                           "0x0B and ends with 0x1C 0x0D): not an HL7 message"))
                elif isinstance(ev, TooLarge):
                    await self._answer(writer, self.gateway.garbage(
                        b"", peer, f"The message is larger than the limit of "
                                   f"{self.max_message} bytes; it was not read"))
            await writer.drain()

    async def _answer(self, writer: asyncio.StreamWriter, d: Decision) -> None:
        fut = self.writer.submit(d)
        done = await asyncio.wrap_future(fut)
        ack = done.received.ack
        if ack:
            writer.write(frame(ack.encode(d.codec, errors="replace")))
        else:  # the sender asked for no HL7 acknowledgment: MLLP's commit acknowledgment
            writer.write(COMMIT_ACK)
        await writer.drain()
