"""The media service's HTTP interface: WHIP (RFC 9725) to publish, WHEP to subscribe, room
events as Server-Sent Events, all authorised by a media token (`Authorization: Bearer`) that
works only for its room and participant.

    POST   {base}/rooms/{room}/whip                    SDP offer -> 201 answer + Location
    DELETE {base}/rooms/{room}/whip/{session}          leave
    POST   {base}/rooms/{room}/whep/{participant}      recvonly offer -> 201 answer + Location
    DELETE {base}/rooms/{room}/whep/{participant}/{session}
    GET    {base}/rooms/{room}/events                  text/event-stream
    GET    {base}/health

ICE servers are advertised in `Link: <url>; rel="ice-server"` headers (RFC 9725 section 4.6).
Trickle ICE is not offered (PATCH answers 405): the answer carries every candidate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from media.rooms import LiveRoom, SignalingError
from operations.visits.rooms import Grant, LinkRefused

log = logging.getLogger("telefhir.media")

SDP = "application/sdp"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS, PATCH",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
}

Verify = Callable[[str], Awaitable[Grant]]
RoomLookup = Callable[[str], Awaitable[LiveRoom | None]]


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status,
                             headers={**_CORS, **(headers or {})})


class MediaHttp:
    """Request handlers over the rooms of this process."""

    def __init__(self, base_path: str, verify: Verify, room: RoomLookup,
                 ice_links: list[str]) -> None:
        self.base = base_path.rstrip("/")
        self._verify = verify
        self._room = room
        self._ice_links = ice_links

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024, middlewares=[self._errors])
        b = self.base
        app.router.add_get(f"{b}/health", self.health)
        app.router.add_post(f"{b}/rooms/{{room}}/whip", self.whip)
        app.router.add_delete(f"{b}/rooms/{{room}}/whip/{{session}}", self.leave)
        app.router.add_patch(f"{b}/rooms/{{room}}/whip/{{session}}", self.no_trickle)
        app.router.add_post(f"{b}/rooms/{{room}}/whep/{{target}}", self.whep)
        app.router.add_delete(f"{b}/rooms/{{room}}/whep/{{target}}/{{session}}", self.leave)
        app.router.add_patch(f"{b}/rooms/{{room}}/whep/{{target}}/{{session}}", self.no_trickle)
        app.router.add_get(f"{b}/rooms/{{room}}/events", self.events)
        app.router.add_route("OPTIONS", f"{b}/{{tail:.*}}", self.preflight)
        return app

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except SignalingError as exc:
            return _problem(exc.status, exc.reason)
        except LinkRefused as exc:
            return _problem(exc.status, exc.reason)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _problem(exc.status, exc.reason)
            raise

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=_CORS)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=_CORS)

    async def no_trickle(self, request: web.Request) -> web.Response:
        return _problem(405, "Trickle ICE is not supported: send every candidate in the offer",
                        {"Allow": "DELETE"})

    async def _grant(self, request: web.Request) -> tuple[Grant, LiveRoom]:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Unauthorized()
        grant = await self._verify(token.strip())
        room_id = request.match_info["room"]
        if grant.room != room_id:
            raise SignalingError(403, "The media token is for another room")
        room = await self._room(room_id)
        if room is None:
            raise SignalingError(410, "This visit has ended")
        return grant, room

    async def _offer(self, request: web.Request) -> str:
        ctype = request.content_type
        if ctype != SDP:
            raise SignalingError(415, f"The offer must be {SDP}, not {ctype or '(none)'}")
        text = await request.text()
        if not text.strip().startswith("v=0"):
            raise SignalingError(400, "The body is not an SDP offer")
        return text

    def _created(self, location: str, sdp: str) -> web.Response:
        headers = {**_CORS, "Location": location}
        if self._ice_links:
            headers["Link"] = ", ".join(self._ice_links)
        return web.Response(status=201, text=sdp, content_type=SDP, headers=headers)

    async def whip(self, request: web.Request) -> web.Response:
        try:
            grant, room = await self._grant(request)
        except _Unauthorized:
            return _problem(401, "A media token is required", {"WWW-Authenticate": "Bearer"})
        offer = await self._offer(request)
        session, answer = await room.publish(grant, offer)
        return self._created(f"{self.base}/rooms/{room.room}/whip/{session.id}", answer)

    async def whep(self, request: web.Request) -> web.Response:
        try:
            grant, room = await self._grant(request)
        except _Unauthorized:
            return _problem(401, "A media token is required", {"WWW-Authenticate": "Bearer"})
        offer = await self._offer(request)
        target = request.match_info["target"]
        session, answer = await room.subscribe(grant, target, offer)
        return self._created(
            f"{self.base}/rooms/{room.room}/whep/{target}/{session.id}", answer)

    async def leave(self, request: web.Request) -> web.Response:
        try:
            grant, room = await self._grant(request)
        except _Unauthorized:
            return _problem(401, "A media token is required", {"WWW-Authenticate": "Bearer"})
        session = room.find(request.match_info["session"])
        if session is None or session.participant != grant.participant:
            return _problem(404, "No such session of this participant")
        await room.end_session(session)
        return web.Response(status=200, headers=_CORS)

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            _grant, room = await self._grant(request)
        except _Unauthorized:
            return _problem(401, "A media token is required", {"WWW-Authenticate": "Bearer"})
        resp = web.StreamResponse(headers={**_CORS, "Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        q = room.listen()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                data = json.dumps(event)
                await resp.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            room.unlisten(q)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp


class _Unauthorized(Exception):
    pass


def ice_link_headers(servers: list[dict[str, Any]]) -> list[str]:
    """`Link` header values for ICE servers (RFC 9725 section 4.6)."""
    out = []
    for s in servers:
        for url in s.get("urls", []):
            value = f'<{url}>; rel="ice-server"'
            if s.get("username"):
                value += f'; username="{s["username"]}"; credential="{s.get("credential", "")}"'
                value += '; credential-type="password"'
            out.append(value)
    return out
