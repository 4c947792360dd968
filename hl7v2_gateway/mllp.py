"""A sans-IO MLLP framer: bytes in, messages out, no sockets.

MLLP release 2 (HL7 v2.5.1 Implementation Guide: Transport Specification, MLLP, appendix C,
https://www.hl7.org/implement/standards/product_brief.cfm?product_id=55): a frame is
``<VT> message <FS><CR>`` with VT = 0x0B, FS = 0x1C, CR = 0x0D. Bytes outside a frame are
reported as garbage (they are not HL7 and deserve a reject rather than silence); a frame longer
than the size limit is reported once and then skipped up to its end, so the stream stays in step.
"""

from __future__ import annotations

from dataclasses import dataclass

VT = 0x0B
FS = 0x1C
CR = 0x0D
START = bytes([VT])
END = bytes([FS, CR])


def frame(message: bytes) -> bytes:
    """`message` wrapped as one MLLP frame."""
    return START + message + END


@dataclass(frozen=True)
class Frame:
    """One complete message (the bytes between VT and FS CR)."""

    data: bytes


@dataclass(frozen=True)
class Garbage:
    """Bytes that arrived outside a frame. A run of garbage split over several reads comes as
    several events; all but the first have `continued` set (answer a run once)."""

    data: bytes
    continued: bool = False


@dataclass(frozen=True)
class TooLarge:
    """A frame grew past the size limit; its bytes up to the next FS CR are dropped."""

    size: int  # how many bytes of it had arrived when it was given up


Event = Frame | Garbage | TooLarge


class MllpFramer:
    """Feed bytes with `feed`; it returns the events they complete, in order.

    `max_message` limits the bytes of one message; garbage is reported in pieces of at most
    `max_garbage` bytes (the rest of a garbage run is counted, not kept)."""

    def __init__(self, max_message: int = 16 * 1024 * 1024, max_garbage: int = 4096) -> None:
        self.max_message = max_message
        self.max_garbage = max_garbage
        self._buf = bytearray()  # message bytes received so far (inside a frame)
        self._garbage = bytearray()
        self._in_frame = False
        self._skipping = False  # inside a frame that is too large
        self._skipped = 0
        self._fs_pending = False  # the last byte seen inside a frame was FS
        self._garbage_run = False  # garbage has been reported since the last frame
        self._garbage_dropped = False  # garbage beyond max_garbage was counted, not kept

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not ended (a connection closing now cut it off)."""
        return self._in_frame

    @property
    def pending(self) -> int:
        """Bytes of the unfinished frame held so far."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """Consume `data`; return the frames, garbage and size overruns it completes."""
        out: list[Event] = []
        view = memoryview(data)
        i, n = 0, len(data)
        while i < n:
            if not self._in_frame:
                start = data.find(START, i)
                stop = n if start < 0 else start
                if stop > i:
                    self._add_garbage(view[i:stop])
                if start < 0:
                    break
                self._flush_garbage(out)
                self._in_frame, self._fs_pending, self._garbage_run = True, False, False
                i = start + 1
                continue
            if self._fs_pending:
                self._fs_pending = False
                if data[i] == CR:
                    i += 1
                    self._end_frame(out)
                    continue
                self._append(bytes([FS]), out)  # a lone FS is message content
            end = data.find(FS, i)
            if end < 0:
                self._append(view[i:n], out)
                break
            self._append(view[i:end], out)
            self._fs_pending = True
            i = end + 1
        if not self._in_frame:
            self._flush_garbage(out)
        return out

    def _append(self, chunk: memoryview | bytes, out: list[Event]) -> None:
        if self._skipping:
            self._skipped += len(chunk)
            return
        if len(self._buf) + len(chunk) > self.max_message:
            self._skipping = True
            self._skipped = len(self._buf) + len(chunk)
            self._buf = bytearray()
            out.append(TooLarge(self._skipped))
            return
        self._buf += chunk

    def _end_frame(self, out: list[Event]) -> None:
        self._in_frame = False
        if self._skipping:
            self._skipping = False
            self._skipped = 0
            return
        out.append(Frame(bytes(self._buf)))
        self._buf = bytearray()

    def _add_garbage(self, chunk: memoryview) -> None:
        room = self.max_garbage - len(self._garbage)
        if room > 0:
            self._garbage += chunk[:room]
        if len(chunk) > room:
            self._garbage_dropped = True

    def _flush_garbage(self, out: list[Event]) -> None:
        if self._garbage or self._garbage_dropped:
            out.append(Garbage(bytes(self._garbage), self._garbage_run))
            self._garbage = bytearray()
            self._garbage_dropped = False
            self._garbage_run = True
