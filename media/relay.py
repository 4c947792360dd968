"""Relaying one participant's media to the others, inside the media process.

A `Source` is one published track kind (audio or video) of one participant. Subscribers get a
`RelayTrack` each, which exists before the publisher does (a WHEP subscription may come first)
and keeps its timeline across a publisher who drops and rejoins, so a subscriber never has to
renegotiate.

Two modes:
- passthrough: the encoded frames the publisher sends (VP8, Opus) are forwarded as they are,
  re-packetised by each subscriber's RTP sender, without decoding or encoding: the way an SFU
  such as mediasoup forwards. aiortc has no public API for this, so `tap_receiver` installs a
  `FrameTap` where the receiver would queue frames for its decoder thread; key frame requests
  (RTCP PLI, RFC 4585 section 6.3.1) from subscribers are passed on to the publisher.
- transcode: the publisher's decoded frames are fanned out and each subscriber's sender encodes
  them again (aiortc's usual path; costs a decode per publisher and an encode per subscriber).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from media.options import MODES, PASSTHROUGH, TRANSCODE

__all__ = ["MODES", "PASSTHROUGH", "TRANSCODE", "RelayTrack", "Source", "tap_receiver",
           "forward_keyframe_requests", "release_complete_frames", "RealtimeVp8Encoder",
           "use_realtime_encoder"]

log = logging.getLogger("telefhir.media")

CLOCK_RATES = {"video": 90_000, "audio": 48_000}
_QUEUE_DEPTH = {"video": 30, "audio": 50}  # frames a slow subscriber may lag before drops


class RelayTrack(MediaStreamTrack):
    """What one subscriber's RTP sender reads: the frames (transcode) or encoded packets
    (passthrough) of one Source."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUE_DEPTH[source.kind])
        self.dropped = 0

    def offer(self, item: Any) -> None:
        """Queue one frame or packet from the source (dropping the oldest when full);
        None ends the track."""
        if self.readyState != "live":
            return
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(item)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item

    def request_keyframe(self) -> None:
        """A subscriber's receiver asked for a key frame: ask the publisher."""
        self._source.request_keyframe()

    def stop(self) -> None:
        super().stop()
        self._source.unsubscribe(self)


class Source:
    """One published kind (audio or video) of one participant, and its subscribers."""

    def __init__(self, kind: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"media mode must be one of {MODES}, not {mode!r}")
        self.kind = kind
        self.mode = mode
        self.subscribers: list[RelayTrack] = []
        self.frames_in = 0
        self._epoch = 0
        self._epoch_seen = 0  # the epoch whose timeline `_offset` continues
        self._offset = 0  # added to the publisher's pts so the timeline never jumps back
        self._last_pts: int | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._pump: asyncio.Task[None] | None = None
        self._keyframe_pending = False

    @property
    def publishing(self) -> bool:
        return self._receiver is not None

    def subscribe(self) -> RelayTrack:
        """A new track for one subscriber (works before anyone publishes)."""
        track = RelayTrack(self)
        self.subscribers.append(track)
        if self.publishing:
            self.request_keyframe()  # so the newcomer can start decoding at once
        return track

    def unsubscribe(self, track: RelayTrack) -> None:
        if track in self.subscribers:
            self.subscribers.remove(track)

    def attach(self, receiver: RTCRtpReceiver) -> None:
        """Start relaying what `receiver` receives (a new publisher, or the same after a
        rejoin). In passthrough mode the tap must already be installed (tap_receiver)."""
        self.detach()
        self._epoch += 1
        self._receiver = receiver
        if self.mode == TRANSCODE:
            self._pump = asyncio.ensure_future(self._pump_decoded(receiver.track, self._epoch))

    def detach(self) -> None:
        """The publisher left: subscribers keep their tracks and wait for the next one."""
        self._receiver = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def close(self) -> None:
        """The room closed: end every subscriber's track."""
        self.detach()
        for track in list(self.subscribers):
            track.offer(None)

    def push(self, item: Any, receiver: RTCRtpReceiver | None = None) -> None:
        """Fan one frame or packet out to every subscriber."""
        if receiver is not None and receiver is not self._receiver:
            return  # a stale publisher connection
        self.frames_in += 1
        pts = int(item.pts or 0)
        if self._epoch_seen != self._epoch:
            # A new publisher timeline (a rejoin): continue one frame after the last item.
            step = CLOCK_RATES[self.kind] // (30 if self.kind == "video" else 50)
            base = self._last_pts + step if self._last_pts is not None else 0
            self._offset = base - pts
            self._epoch_seen = self._epoch
        item.pts = pts + self._offset
        self._last_pts = item.pts
        for track in self.subscribers:
            track.offer(item)

    def request_keyframe(self) -> None:
        """Send a PLI to the publisher, at most one in flight per event-loop turn."""
        receiver = self._receiver
        if receiver is None or self.kind != "video" or self._keyframe_pending:
            return
        sources = receiver.getSynchronizationSources()
        if not sources:
            return
        self._keyframe_pending = True

        async def send() -> None:
            try:
                await receiver._send_rtcp_pli(sources[0].source)
            except ConnectionError:
                pass
            finally:
                self._keyframe_pending = False

        asyncio.ensure_future(send())

    async def _pump_decoded(self, track: MediaStreamTrack, epoch: int) -> None:
        try:
            while True:
                frame = await track.recv()
                if epoch != self._epoch:
                    return
                self.push(frame)
        except (MediaStreamError, asyncio.CancelledError):
            return


class FrameTap:
    """Stands in for an RTCRtpReceiver's decoder queue: complete encoded frames from its
    jitter buffer go to `deliver` as av.Packets (pts in the RTP clock) instead of to the
    decoder thread, which is left waiting until the receiver stops."""

    def __init__(self, kind: str, deliver: Callable[[av.Packet], None]) -> None:
        self._deliver = deliver
        self._time_base = fractions.Fraction(1, CLOCK_RATES[kind])
        self._idle: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        if item is None:  # the receiver is stopping: release its decoder thread
            self._idle.put(None)
            return
        _codec, encoded = item
        packet = av.Packet(encoded.data)
        packet.pts = encoded.timestamp
        packet.time_base = self._time_base
        self._deliver(packet)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._idle.get(*args, **kwargs)


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing a frame as soon as it is complete.

    aiortc's buffer knows a frame is complete only when the first packet of the next frame
    arrives, which holds every frame back one frame interval (67 ms at 15 fps) at each hop. An
    RTP video frame is complete when its packets are contiguous up to the one with the marker
    bit (RFC 7741 section 4.1 for VP8); an Opus packet is a frame of its own (RFC 7587). A
    relay forwards frames, so releasing them at once removes that hop's delay; gaps and
    reordering are still handled by the base class."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        origin = self._origin
        if origin is None:
            return None
        first = self._packets[origin % self._capacity]
        if first is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self._capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None or packet.timestamp != first.timestamp:
                break
            packets.append(packet)
            if packet.marker or not self._is_video:
                frame = JitterFrame(data=b"".join(x._data for x in packets),  # type: ignore
                                    timestamp=first.timestamp)
                self.remove(count + 1)
                return frame
        return super()._remove_frame(sequence_number)


def tap_receiver(receiver: RTCRtpReceiver, source: Source) -> None:
    """Route `receiver`'s encoded frames to `source` without decoding. Must run after
    setRemoteDescription created the receiver and before the connection starts it."""
    kind = receiver.track.kind
    tap = FrameTap(kind, lambda p: source.push(p, receiver))
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    release_complete_frames(receiver, video_capacity=512)


def release_complete_frames(receiver: RTCRtpReceiver, video_capacity: int = 128) -> None:
    """Give `receiver` a MarkerJitterBuffer (frames leave at their marker bit), in either mode:
    in transcode mode the decoder then starts one frame interval sooner. Must run before the
    connection starts the receiver. aiortc's own capacities are 128 (video) and 16 (audio)."""
    receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
        MarkerJitterBuffer(capacity=video_capacity, is_video=True)
        if receiver.track.kind == "video" else MarkerJitterBuffer(capacity=16, prefetch=0))


class RealtimeVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder (same CBR rate control, bitrate adaptation, key frames on
    request) with two libvpx settings for a relay that encodes one stream per subscriber:
    speed 12 instead of 6 (`cpu-used`, fixed speed when negative) and the temporal denoiser
    off (`noise-sensitivity` 0; the relay re-encodes frames that were already encoded, so
    there is no camera noise to remove). Measured on the bench's 640x480 stream: 1.3 instead
    of 2.0 ms of a core per frame at the same 475 kbps (bench/README.md).
    https://www.webmproject.org/docs/encoder-parameters/"""

    SPEED = "-12"

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False
               ) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.VideoFrame)
        codec = self.codec
        if (codec is None or frame.width != codec.width or frame.height != codec.height
                or not codec.bit_rate
                or abs(self.target_bitrate - codec.bit_rate) / codec.bit_rate > 0.1):
            self.codec = self._open(frame.width, frame.height)
        return super().encode(frame, force_keyframe)

    def _open(self, width: int, height: int) -> Any:
        rate = str(self.target_bitrate)
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = self.target_bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = 3000
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": rate, "minrate": rate, "maxrate": rate,  # CBR, 1 s buffer (as aiortc)
            "cpu-used": self.SPEED, "deadline": "realtime", "lag-in-frames": "0",
            "noise-sensitivity": "0", "overshoot-pct": "15", "partitions": "0",
            "static-thresh": "1", "undershoot-pct": "100",
        }
        codec.thread_count = 1  # the relay runs many encoders, each on one thread
        return codec


def use_realtime_encoder(sender: RTCRtpSender) -> None:
    """Make a video sender encode with RealtimeVp8Encoder (rooms negotiate VP8 only). Must run
    before the sender sends its first frame."""
    sender._RTCRtpSender__encoder = RealtimeVp8Encoder()  # type: ignore[attr-defined]


def forward_keyframe_requests(sender: RTCRtpSender, track: RelayTrack) -> None:
    """Let a subscriber's PLI/FIR reach the publisher (a passthrough sender has no encoder
    that could make a key frame itself)."""
    sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]
