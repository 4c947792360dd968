"""A configurable UDP port range for the media service's ICE candidates.

aioice (under aiortc) binds each host candidate to an ephemeral port (`local_addr=(ip, 0)`),
with no option for a range, while a hospital firewall opens a known range. The media process
owns its event loop, so it wraps that loop's `create_datagram_endpoint`: a request for port 0
takes the next free port of the range instead (the range wraps around; exhausted is an
OSError, which aioice reports as a candidate it could not gather)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any


def use_port_range(loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
    """Make UDP endpoints on `loop` that ask for any port use one of low..high."""
    original = loop.create_datagram_endpoint
    ports = itertools.cycle(range(low, high + 1))
    size = high - low + 1

    async def create_datagram_endpoint(protocol_factory: Any, local_addr: Any = None,
                                       **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await original(protocol_factory, local_addr=local_addr, **kwargs)
        last: OSError | None = None
        for _ in range(size):
            try:
                return await original(protocol_factory, local_addr=(local_addr[0], next(ports)),
                                      **kwargs)
            except OSError as exc:  # in use: try the next one
                last = exc
        raise OSError(f"no free UDP port in {low}-{high}") from last

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign,assignment]
