"""The sans-IO MLLP framer: split at every offset, several messages a read, garbage between
frames, 1 MB messages, the size limit."""

from __future__ import annotations

import pytest

from hl7v2_gateway.mllp import FS, Frame, Garbage, MllpFramer, TooLarge, frame

MSG1 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||123^^^H^MR\r"
MSG2 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A08|2|P|2.5\rPID|1||456^^^H^MR\r"


def feed_all(framer: MllpFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for c in chunks:
        out += framer.feed(c)
    return out


def frames(events: list[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Frame)]


def test_one_frame_in_one_read() -> None:
    assert frames(MllpFramer().feed(frame(MSG1))) == [MSG1]


@pytest.mark.parametrize("split", range(0, len(frame(MSG1) + frame(MSG2)) + 1))
def test_split_at_every_offset(split: int) -> None:
    stream = frame(MSG1) + frame(MSG2)
    events = feed_all(MllpFramer(), [stream[:split], stream[split:]])
    assert frames(events) == [MSG1, MSG2]
    assert not [e for e in events if not isinstance(e, Frame)]


def test_every_byte_on_its_own() -> None:
    stream = frame(MSG1) + frame(MSG2)
    assert frames(feed_all(MllpFramer(), [bytes([b]) for b in stream])) == [MSG1, MSG2]


def test_several_messages_per_read() -> None:
    stream = b"".join(frame(m) for m in [MSG1, MSG2, MSG1, MSG2])
    assert frames(MllpFramer().feed(stream)) == [MSG1, MSG2, MSG1, MSG2]


def test_garbage_between_frames_is_reported_once_per_run() -> None:
    stream = frame(MSG1) + b"\r\nnoise here" + frame(MSG2) + b"tail"
    events = MllpFramer().feed(stream)
    assert frames(events) == [MSG1, MSG2]
    garbage = [e for e in events if isinstance(e, Garbage)]
    assert [g.data for g in garbage] == [b"\r\nnoise here", b"tail"]
    assert not any(g.continued for g in garbage)


@pytest.mark.parametrize("split", [1, 3, 7])
def test_garbage_split_over_reads_is_one_run(split: int) -> None:
    framer = MllpFramer()
    noise = b"GET / HTTP/1.1\r\n\r\n"
    events = feed_all(framer, [noise[:split], noise[split:], frame(MSG1)])
    garbage = [e for e in events if isinstance(e, Garbage)]
    assert b"".join(g.data for g in garbage) == noise
    assert [g.continued for g in garbage] == [False] + [True] * (len(garbage) - 1)
    assert frames(events) == [MSG1]


def test_one_megabyte_message() -> None:
    big = b"MSH|^~\\&|A|B|C|D|20240101||MDM^T02|1|P|2.5\rOBX|1|TX|||" + b"x" * (1 << 20) + b"\r"
    stream = frame(big) + frame(MSG1)
    chunks = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]
    assert frames(feed_all(MllpFramer(), chunks)) == [big, MSG1]


def test_too_large_is_reported_once_and_skipped_to_the_frame_end() -> None:
    framer = MllpFramer(max_message=1000)
    big = b"A" * 5000
    stream = frame(big) + frame(MSG1)
    events = feed_all(framer, [stream[i:i + 700] for i in range(0, len(stream), 700)])
    too = [e for e in events if isinstance(e, TooLarge)]
    assert len(too) == 1 and too[0].size > 1000
    assert frames(events) == [MSG1]


def test_lone_fs_inside_a_frame_is_content() -> None:
    body = b"MSH|x" + bytes([FS]) + b"y"
    assert frames(MllpFramer().feed(frame(body))) == [body]


def test_unfinished_frame_is_visible() -> None:
    framer = MllpFramer()
    assert framer.feed(b"\x0bMSH|^~\\&|never ends") == []
    assert framer.in_frame and framer.pending == len(b"MSH|^~\\&|never ends")


def test_frame_without_start_byte_is_garbage() -> None:
    events = MllpFramer().feed(MSG1 + b"\x1c\r")
    assert not frames(events)
    assert isinstance(events[0], Garbage)
