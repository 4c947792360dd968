"""One load-generator process for the media bench: runs VISITS two-party visits, each party a
plain aiortc RTCPeerConnection that publishes synthetic 640x480 15 fps VP8 video at ~500 kbps
(and Opus audio) over WHIP and subscribes to the other party over WHEP.

To keep the load generator cheap, video is encoded once per run (a loop of FRAMES frames,
each carrying its number as a 16-bit block pattern, shared by the load processes through
--video-cache) and replayed as encoded packets; the received side reads each frame's number
(from the encoded bytes in passthrough mode, where the relay forwards them unchanged, or from
the decoded pixels in transcode mode) to measure end-to-end latency and loss, and counts Opus
frames without decoding them. Prints one JSON line of results. Driven by bench/media/run.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import hashlib
import json
import os
import queue
import struct
import sys
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

FPS = 15
FRAMES = 1200  # 80 s of video before the loop repeats
W, H = 640, 480
VIDEO_TB = fractions.Fraction(1, 90_000)
AUDIO_TB = fractions.Fraction(1, 48_000)


def _frame_image(n: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 0] = (np.arange(W) + n * 4) % 256  # moving gradient: real motion to encode
    img[:, :, 1] = 80
    img[:, :, 2] = (np.arange(H)[:, None] + n) % 256
    for bit in range(16):  # the frame number, 16 blocks of 40x40 along the top
        img[0:40, bit * 40:(bit + 1) * 40] = 255 if (n >> bit) & 1 else 0
    return img


def read_number(frame: av.VideoFrame) -> int:
    img = frame.to_ndarray(format="rgb24")
    n = 0
    for bit in range(16):
        if img[10:30, bit * 40 + 10:bit * 40 + 30].mean() > 127:
            n |= 1 << bit
    return n


def encode_video() -> list[bytes]:
    """FRAMES VP8 frames at 500 kbps, a key frame every 2 s (a replayed stream cannot answer
    a key frame request, so new subscribers wait for the next one)."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.bit_rate = 500_000
    ctx.framerate = fractions.Fraction(FPS, 1)
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.gop_size = 2 * FPS
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                   "error-resilient": "1"}
    out: list[bytes] = []
    for n in range(FRAMES):
        frame = av.VideoFrame.from_ndarray(_frame_image(n), format="rgb24").reformat(
            format="yuv420p")
        frame.pts = n
        for packet in ctx.encode(frame):
            out.append(bytes(packet))
    for packet in ctx.encode(None):
        out.append(bytes(packet))
    return out[:FRAMES]


def cached_video(path: str | None) -> list[bytes]:
    """The encoded loop from `path` (length-prefixed frames), encoding and writing it first
    if it is not there, so that N load processes encode the stream once, not N times."""
    if path and os.path.exists(path):
        data = memoryview(open(path, "rb").read())
        frames, pos = [], 0
        while pos < len(data):
            (size,) = struct.unpack_from(">I", data, pos)
            frames.append(bytes(data[pos + 4:pos + 4 + size]))
            pos += 4 + size
        return frames
    frames = encode_video()
    if path:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            for frame in frames:
                f.write(struct.pack(">I", len(frame)) + frame)
        os.replace(tmp, path)
    return frames


def encode_audio() -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "s16"
    out: list[bytes] = []
    for n in range(50):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        for p in frame.planes:
            p.update(bytes(p.buffer_size))
        frame.sample_rate, frame.pts = 48_000, n * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    return out


class Replay(MediaStreamTrack):
    """Pre-encoded packets at a fixed rate, recording when each frame number went out."""

    def __init__(self, kind: str, packets: list[bytes], rate: int, sent: dict[int, float]
                 ) -> None:
        super().__init__()
        self.kind = kind
        self._packets, self._rate, self._sent = packets, rate, sent
        self._start: float | None = None
        self._n = -1

    async def recv(self) -> av.Packet:
        self._n += 1
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._n / self._rate - now
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._packets[self._n % len(self._packets)])
        if self.kind == "video":
            packet.pts, packet.time_base = self._n * (90_000 // self._rate), VIDEO_TB
            self._sent[self._n] = time.monotonic()
        else:
            packet.pts, packet.time_base = self._n * 960, AUDIO_TB
        return packet


class _Tap:
    """Stands in for the receiver's decoder queue (passthrough mode): counts encoded frames
    and identifies them by their bytes."""

    def __init__(self, on_frame: Any) -> None:
        self._on_frame = on_frame
        self._idle: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        if item is None:
            self._idle.put(None)
        else:
            self._on_frame(item[1].data)

    def get(self, *a: Any, **k: Any) -> Any:
        return self._idle.get(*a, **k)


class Stream:
    """What one subscriber saw of one publisher."""

    def __init__(self, sent: dict[int, float]) -> None:
        self.sent = sent
        self.received = 0
        self.audio_received = 0
        self.latencies_ms: list[float] = []
        self.numbers: set[int] = set()
        self._loop = 0
        self._last = -1

    def got(self, number_in_loop: int) -> None:
        now = time.monotonic()
        if number_in_loop < self._last - FRAMES // 2:
            self._loop += 1
        self._last = number_in_loop
        n = self._loop * FRAMES + number_in_loop
        self.received += 1
        self.numbers.add(n)
        t = self.sent.get(n)
        if t is not None:
            self.latencies_ms.append((now - t) * 1000)


async def _exchange(http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str,
                    token: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as r:
        body = await r.text()
        if r.status != 201:
            raise RuntimeError(f"{url}: {r.status} {body}")
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))


async def party(http: aiohttp.ClientSession, media: str, visit: dict[str, Any], me: str,
                other: str, mode: str, video: list[bytes], audio: list[bytes],
                sent: dict[str, dict[int, float]], by_hash: dict[bytes, int],
                streams: dict[str, Stream], pcs: list[RTCPeerConnection]) -> None:
    room, token = visit["room"], visit["tokens"][me]
    cfg = RTCConfiguration(iceServers=[])
    sub = RTCPeerConnection(cfg)
    pcs.append(sub)
    a = sub.addTransceiver("audio", direction="recvonly")
    t = sub.addTransceiver("video", direction="recvonly")
    stream = Stream(sent[f"{room}/{other}"])
    streams[f"{room}/{other}->{me}"] = stream

    def on_audio(data: bytes) -> None:
        stream.audio_received += 1
    # Opus frames are counted, not decoded: a decoder thread per subscriber, woken 50 times a
    # second, costs the load generator more than all of its video (GIL hand-offs).
    a.receiver._RTCRtpReceiver__decoder_queue = _Tap(on_audio)  # type: ignore[attr-defined]

    if mode == "passthrough":
        def on_encoded(data: bytes) -> None:
            n = by_hash.get(hashlib.blake2b(data, digest_size=8).digest())
            if n is not None:
                stream.got(n)
        t.receiver._RTCRtpReceiver__decoder_queue = _Tap(on_encoded)  # type: ignore[attr-defined]
        # Nor is the bandwidth estimated (a sixth of the load's CPU): a passthrough relay
        # forwards what it gets, so this subscriber's REMB would change nothing upstream.
        # (In transcode mode it sets the relay's encoder bitrate and stays.)
        t.receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    else:
        @sub.on("track")
        def on_track(track: Any) -> None:
            if track.kind != "video":
                return

            async def read() -> None:
                with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
                    while True:
                        stream.got(read_number(await track.recv()))
            asyncio.ensure_future(read())

    await _exchange(http, sub, f"{media}/rooms/{room}/whep/{other}", token)
    pub = RTCPeerConnection(cfg)
    pcs.append(pub)
    pub.addTransceiver(Replay("audio", audio, 50, {}), direction="sendonly")
    pub.addTransceiver(Replay("video", video, FPS, sent[f"{room}/{me}"]), direction="sendonly")
    await _exchange(http, pub, f"{media}/rooms/{room}/whip", token)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    visits = json.loads(args.visits)
    video, audio = cached_video(args.video_cache), encode_audio()
    by_hash = {hashlib.blake2b(f, digest_size=8).digest(): n for n, f in enumerate(video)}
    sent: dict[str, dict[int, float]] = {}
    for v in visits:
        for p in ("a", "b"):
            sent[f"{v['room']}/{p}"] = {}
    streams: dict[str, Stream] = {}
    pcs: list[RTCPeerConnection] = []
    async with aiohttp.ClientSession() as http:
        for v in visits:
            await party(http, args.media, v, "a", "b", args.mode, video, audio, sent, by_hash,
                        streams, pcs)
            await party(http, args.media, v, "b", "a", args.mode, video, audio, sent, by_hash,
                        streams, pcs)
        print("ready", file=sys.stderr, flush=True)
        await asyncio.sleep(args.warmup)
        marks = {k: (len(s.latencies_ms), max(s.numbers, default=-1), s.audio_received)
                 for k, s in streams.items()}
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        elapsed = time.monotonic() - t0
        result: dict[str, Any] = {"streams": {}}
        for key, s in streams.items():
            lat0, first, audio0 = marks[key]
            # frames sent in the window that the window allowed time to arrive (1 s margin)
            pub_key = key.split("->")[0]
            sent_in = [n for n, t in sent[pub_key].items()
                       if t0 <= t <= t0 + elapsed - 1.0]
            got = [n for n in sent_in if n in s.numbers]
            result["streams"][key] = {
                "sent": len(sent_in), "received": len(got),
                "latencies_ms": s.latencies_ms[lat0:], "first_before_window": first,
                "audio_frames_per_s": round((s.audio_received - audio0) / elapsed, 1),
            }
        for pc in pcs:
            await pc.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--media", default="", help="http://host:port/media")
    parser.add_argument("--visits", default="[]", help="JSON list of {room, tokens:{a,b}}")
    parser.add_argument("--mode", choices=("passthrough", "transcode"), default="passthrough")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--video-cache", default=None,
                        help="file of the pre-encoded video loop (written if missing)")
    parser.add_argument("--write-video", action="store_true",
                        help="only write --video-cache and exit")
    args = parser.parse_args()
    if args.write_video:
        cached_video(args.video_cache)
        return
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
