"""The inbox writer's group commit: messages that arrive while its transaction waits for the
store's write lock are committed in that transaction (one lock turn), each ACK only after it."""

from __future__ import annotations

import threading
from typing import Any

from hl7v2_gateway.listener import InboxWriter


class _LockedGateway:
    """A gateway whose record() first waits (as for SQLite's write lock), then calls `more`."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[Any]] = []

    def record(self, decisions: list[Any], more: Any = None) -> None:
        self.entered.set()
        assert self.release.wait(10)
        if more is not None:
            decisions.extend(more())
        self.batches.append(list(decisions))


def test_messages_arriving_during_the_lock_wait_join_that_commit() -> None:
    gw = _LockedGateway()
    writer = InboxWriter(gw)  # type: ignore[arg-type]
    try:
        first = writer.submit("m1")  # type: ignore[arg-type]
        assert gw.entered.wait(10)
        later = [writer.submit(m) for m in ("m2", "m3")]  # type: ignore[arg-type]
        assert not first.done()  # no ACK before the commit
        gw.release.set()
        assert [f.result(10) for f in (first, *later)] == ["m1", "m2", "m3"]
        assert gw.batches == [["m1", "m2", "m3"]]
    finally:
        gw.release.set()
        writer.close()


def test_close_during_the_lock_wait_still_commits_what_came() -> None:
    gw = _LockedGateway()
    writer = InboxWriter(gw)  # type: ignore[arg-type]
    first = writer.submit("m1")  # type: ignore[arg-type]
    assert gw.entered.wait(10)
    second = writer.submit("m2")  # type: ignore[arg-type]
    closer = threading.Thread(target=writer.close)
    closer.start()
    gw.release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert (first.result(1), second.result(1)) == ("m1", "m2")
    assert gw.batches == [["m1", "m2"]]
