"""Live rooms inside the media process: participants, their peer connections and the relay
between them, and the events a room pushes (joined, left, state, closed).

The media service is the WebRTC peer of every participant: each one publishes (WHIP, RFC 9725)
one audio and one video track to it, and subscribes (WHEP) to each other participant's media,
also before that participant has joined; the service relays tracks between them (media.relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from media.relay import (
    PASSTHROUGH,
    Source,
    forward_keyframe_requests,
    release_complete_frames,
    tap_receiver,
    use_realtime_encoder,
)
from operations.visits.rooms import Grant

log = logging.getLogger("telefhir.media")

KINDS = ("audio", "video")
_CODECS = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}


class SignalingError(Exception):
    """An offer or request the room cannot take; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Session:
    """One peer connection: a participant's publication, or a subscription to a target."""

    id: str
    pc: RTCPeerConnection
    participant: str
    target: str | None = None  # set for a subscription (WHEP)


@dataclass
class Participant:
    id: str
    reference: str = ""
    role: str = ""
    sources: dict[str, Source] = field(default_factory=dict)
    publication: Session | None = None
    subscriptions: dict[str, Session] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        return self.publication is not None or bool(self.subscriptions)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "reference": self.reference, "role": self.role,
                "publishing": self.publication is not None}


def _prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    """VP8 for video and Opus for audio only: a passthrough relay forwards the publisher's
    encoded frames, so every subscriber must take the same codec."""
    caps = RTCRtpSender.getCapabilities(transceiver.kind)
    wanted = _CODECS[transceiver.kind]
    transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType in wanted])


class LiveRoom:
    """One open room in this media process."""

    def __init__(self, room: str, capacity: int, mode: str,
                 ice_servers: list[RTCIceServer],
                 on_presence: Callable[[str, str, bool], None]) -> None:
        self.room = room
        self.capacity = capacity
        self.mode = mode
        self.participants: dict[str, Participant] = {}
        self._ice = ice_servers
        self._on_presence = on_presence  # (room, participant, joined) -> persist
        self._listeners: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.closed = False

    # -- participants ----------------------------------------------------------------------

    def _participant(self, pid: str) -> Participant:
        p = self.participants.get(pid)
        if p is None:
            p = Participant(pid, sources={k: Source(k, self.mode) for k in KINDS})
            self.participants[pid] = p
        return p

    def _admit(self, grant: Grant) -> Participant:
        """The participant of `grant`, refusing a newcomer when the room is full."""
        if self.closed:
            raise SignalingError(410, "This visit has ended")
        p = self._participant(grant.participant)
        if not p.present:
            present = sum(1 for o in self.participants.values() if o.present)
            if present >= self.capacity:
                raise SignalingError(
                    403, f"The room is full ({self.capacity} participants at most)")
        p.reference, p.role = grant.reference, grant.role
        return p

    def _config(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self._ice))

    # -- WHIP: publish ---------------------------------------------------------------------

    async def publish(self, grant: Grant, offer_sdp: str) -> tuple[Session, str]:
        """Take a participant's offer with one audio and one video track; answer it. A
        participant who publishes again (a rejoin) replaces their earlier connection."""
        p = self._admit(grant)
        pc = RTCPeerConnection(self._config())
        session = Session(secrets.token_urlsafe(12), pc, p.id)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            kinds = sorted(t.kind for t in pc.getTransceivers())
            if kinds != ["audio", "video"]:
                raise SignalingError(
                    400, f"A WHIP offer needs one audio and one video track, not {kinds}")
            for t in pc.getTransceivers():
                if t.direction not in ("sendrecv", "sendonly", "recvonly"):
                    raise SignalingError(400, f"The {t.kind} track is not sent")
                t.direction = "recvonly"
                _prefer_codecs(t)
                if self.mode == PASSTHROUGH:
                    tap_receiver(t.receiver, p.sources[t.kind])
                else:
                    release_complete_frames(t.receiver)
            await pc.setLocalDescription(await pc.createAnswer())
        except SignalingError:
            await pc.close()
            raise
        except (ValueError, AssertionError) as exc:
            await pc.close()
            raise SignalingError(400, f"The SDP offer cannot be used: {exc}") from exc
        old = p.publication
        was_present = p.present
        p.publication = session
        for t in pc.getTransceivers():
            p.sources[t.kind].attach(t.receiver)
        self._watch(session)
        if old is not None:
            await old.pc.close()
        if not was_present:
            self._on_presence(self.room, p.id, True)
        self._emit({"type": "joined", "participant": p.describe()})
        self._emit_state()
        return session, pc.localDescription.sdp

    # -- WHEP: subscribe -------------------------------------------------------------------

    async def subscribe(self, grant: Grant, target: str, offer_sdp: str) -> tuple[Session, str]:
        """Answer a recvonly offer with the target participant's media (tracks flow once the
        target publishes, so the subscriber never renegotiates)."""
        if target == grant.participant:
            raise SignalingError(400, "A participant subscribes to the others, not to itself")
        p = self._admit(grant)
        t_p = self._participant(target)
        pc = RTCPeerConnection(self._config())
        session = Session(secrets.token_urlsafe(12), pc, p.id, target)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            kinds = sorted(t.kind for t in pc.getTransceivers())
            if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
                raise SignalingError(400, f"A WHEP offer takes audio and/or video, not {kinds}")
            for t in pc.getTransceivers():
                if t.direction not in ("recvonly", "sendrecv"):
                    raise SignalingError(400, f"The {t.kind} track of a WHEP offer must be "
                                              "recvonly")
                track = t_p.sources[t.kind].subscribe()
                t.sender.replaceTrack(track)
                t.direction = "sendonly"
                _prefer_codecs(t)
                if self.mode == PASSTHROUGH:
                    forward_keyframe_requests(t.sender, track)
                elif t.kind == "video":
                    use_realtime_encoder(t.sender)
            await pc.setLocalDescription(await pc.createAnswer())
        except SignalingError:
            await pc.close()
            raise
        except (ValueError, AssertionError) as exc:
            await pc.close()
            raise SignalingError(400, f"The SDP offer cannot be used: {exc}") from exc
        was_present = p.present
        p.subscriptions[session.id] = session
        self._watch(session)
        if not was_present:
            self._on_presence(self.room, p.id, True)
            self._emit({"type": "joined", "participant": p.describe()})
            self._emit_state()
        return session, pc.localDescription.sdp

    # -- leaving ---------------------------------------------------------------------------

    def find(self, session_id: str) -> Session | None:
        for p in self.participants.values():
            if p.publication is not None and p.publication.id == session_id:
                return p.publication
            if session_id in p.subscriptions:
                return p.subscriptions[session_id]
        return None

    async def end_session(self, session: Session) -> None:
        """Close one connection (DELETE of its resource, or it failed)."""
        p = self.participants.get(session.participant)
        if p is None:
            return
        was_present = p.present
        if p.publication is session:
            p.publication = None
            for s in p.sources.values():
                s.detach()
        elif p.subscriptions.get(session.id) is session:
            del p.subscriptions[session.id]
            for t in session.pc.getTransceivers():
                track = t.sender.track
                if track is not None:
                    track.stop()
        else:
            return
        with contextlib.suppress(Exception):
            await session.pc.close()
        if was_present and not p.present:
            self._on_presence(self.room, p.id, False)
            self._emit({"type": "left", "participant": p.describe()})
        self._emit_state()

    def _watch(self, session: Session) -> None:
        @session.pc.on("connectionstatechange")
        async def changed() -> None:
            if session.pc.connectionState in ("failed", "closed"):
                await self.end_session(session)

    async def close(self) -> None:
        """The visit ended: every connection closes and every listener hears it."""
        if self.closed:
            return
        self.closed = True
        for p in list(self.participants.values()):
            for s in p.sources.values():
                s.close()
            sessions = list(p.subscriptions.values())
            if p.publication is not None:
                sessions.append(p.publication)
            for session in sessions:
                with contextlib.suppress(Exception):
                    await session.pc.close()
            p.publication = None
            p.subscriptions.clear()
        self._emit({"type": "closed", "room": self.room})
        for q in self._listeners:
            q.put_nowait(None)

    # -- events ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"type": "state", "room": self.room, "closed": self.closed,
                "participants": [p.describe() for p in self.participants.values()
                                 if p.present]}

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        q.put_nowait(self.state())
        self._listeners.append(q)
        return q

    def unlisten(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        if q in self._listeners:
            self._listeners.remove(q)

    def _emit(self, event: dict[str, Any]) -> None:
        for q in self._listeners:
            q.put_nowait(event)

    def _emit_state(self) -> None:
        self._emit(self.state())
