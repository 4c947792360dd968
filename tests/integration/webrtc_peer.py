"""A test participant: a plain aiortc RTCPeerConnection that publishes synthetic video of one
colour (and a tone) over WHIP and subscribes to others over WHEP, as any WebRTC client would.
Nothing of the server's code is used here: only aiortc, aiohttp and the HTTP contract."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError


class ColourTrack(VideoStreamTrack):
    """640x480 frames of one RGB colour at 15 fps."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        img = np.zeros((480, 640, 3), np.uint8)
        img[:, :] = rgb
        self._img = img
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._n += 1
        wait = self._start + self._n / 15 - now
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(self._img, format="rgb24")
        frame.pts = self._n * 6000
        frame.time_base = fractions.Fraction(1, 90_000)
        return frame


@dataclass
class Received:
    video_frames: int = 0
    audio_frames: int = 0
    centre: list[tuple[int, int, int]] = field(default_factory=list)


class Peer:
    """One participant's client: `publish()` and `subscribe(target)`."""

    def __init__(self, http: aiohttp.ClientSession, whip: str, whep: str, token: str,
                 rgb: tuple[int, int, int] = (200, 30, 30)) -> None:
        self.http = http
        self.whip, self.whep, self.token = whip, whep, token
        self.rgb = rgb
        self.pcs: list[RTCPeerConnection] = []
        self.received: dict[str, Received] = {}
        self.locations: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/sdp"}

    async def _exchange(self, pc: RTCPeerConnection, url: str) -> aiohttp.ClientResponse:
        await pc.setLocalDescription(await pc.createOffer())
        async with self.http.post(url, data=pc.localDescription.sdp,
                                  headers=self._headers()) as resp:
            body = await resp.text()
            if resp.status == 201:
                await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
                self.locations.append(resp.headers["Location"])
            else:
                await pc.close()
            resp.body_text = body  # type: ignore[attr-defined]
            return resp

    async def publish(self) -> aiohttp.ClientResponse:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        pc.addTransceiver(ColourTrack(self.rgb), direction="sendonly")
        return await self._exchange(pc, self.whip)

    async def subscribe(self, target: str) -> aiohttp.ClientResponse:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        got = self.received.setdefault(target, Received())
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._tasks.append(asyncio.ensure_future(self._read(track, got)))

        return await self._exchange(pc, f"{self.whep}/{target}")

    async def _read(self, track: Any, got: Received) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    got.video_frames += 1
                    px = frame.to_ndarray(format="rgb24")[240, 320]
                    got.centre.append((int(px[0]), int(px[1]), int(px[2])))
                else:
                    got.audio_frames += 1

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for pc in self.pcs:
            await pc.close()


async def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    """Poll `predicate()` until true or timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


def near(rgb: tuple[int, int, int], want: tuple[int, int, int], tol: int = 40) -> bool:
    """Whether a decoded pixel is the colour sent (VP8 and YUV conversion shift it a little)."""
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))
