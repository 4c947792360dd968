"""The media service process: an asyncio event loop of its own (never inside a WSGI worker)
running the WebRTC peers, the relay and the WHIP/WHEP HTTP interface.

Rooms are opened by `$start-visit` in the store (operations.visits.rooms); this process takes a room
up on the first request with a valid token for it, records joins and leaves in the store, and
closes a room's connections within a second of `$end-visit` closing it in the store (it polls
the rooms it hosts). Store calls run in a thread so they never block the media loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer

from fhir_server.store.base import ResourceStore
from media import audio_level
from media.http import MediaHttp, ice_link_headers
from media.options import BASE_PATH, MediaConfig
from media.ports import use_port_range
from media.relay import MODES
from media.rooms import LiveRoom
from operations.visits import rooms as visit_rooms
from operations.visits.rooms import Grant

log = logging.getLogger("telefhir.media")

class MediaService:
    """Rooms of this process, backed by the store."""

    def __init__(self, config: MediaConfig, store: ResourceStore) -> None:
        if config.mode not in MODES:
            raise ValueError(f"--media-mode must be one of {', '.join(MODES)}")
        self.config = config
        self.store = store
        audio_level.install()  # aiortc's per-sample Python loop, vectorised (same values)
        self.rooms: dict[str, LiveRoom] = {}
        self._ice = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                                  credential=s.get("credential")) for s in config.ice_servers]
        self._room_lock = asyncio.Lock()
        self._poll: asyncio.Task[None] | None = None

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.store.transaction() as tx:
            return fn(tx, *args)

    async def verify(self, token: str) -> Grant:
        grant: Grant = await self._db(visit_rooms.verify_token, self.store, token)
        return grant

    async def room(self, room_id: str) -> LiveRoom | None:
        """The live room, taken up from the store on first use; None once closed."""
        live = self.rooms.get(room_id)
        if live is not None:
            return None if live.closed else live
        async with self._room_lock:
            live = self.rooms.get(room_id)
            if live is None:
                stored = await self._db(visit_rooms.get_room, self.store, room_id)
                if stored is None or not stored.open:
                    return None
                live = LiveRoom(room_id, stored.capacity, self.config.mode, self._ice,
                                self._presence)
                self.rooms[room_id] = live
        return live

    def _presence(self, room: str, participant: str, joined: bool) -> None:
        fn = visit_rooms.record_join if joined else visit_rooms.record_leave
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._write, fn, room, participant)

    async def _close_ended_rooms(self) -> None:
        while True:
            await asyncio.sleep(self.config.close_poll_s)
            live = [r for r, lr in self.rooms.items() if not lr.closed]
            if not live:
                continue
            try:
                ended = await self._db(visit_rooms.closed_rooms, self.store, live)
            except Exception:  # a store hiccup must not stop the poller
                log.exception("could not poll for closed rooms")
                continue
            for room_id in ended:
                live_room = self.rooms.pop(room_id, None)
                if live_room is not None:
                    await live_room.close()

    def app(self) -> web.Application:
        http = MediaHttp(BASE_PATH, self.verify, self.room,
                         ice_link_headers(self.config.ice_servers))
        app = http.app()

        async def start(_app: web.Application) -> None:
            self._poll = asyncio.ensure_future(self._close_ended_rooms())

        async def stop(_app: web.Application) -> None:
            if self._poll is not None:
                self._poll.cancel()
            for live in list(self.rooms.values()):
                await live.close()

        app.on_startup.append(start)
        app.on_shutdown.append(stop)
        return app


def run(config: MediaConfig, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT (clean shutdown: every peer connection closed)."""
    from fhir_server.app import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = open_store(config.db_url)
    store.ensure_tables(visit_rooms.ddl(store))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if config.udp_ports is not None:
        use_port_range(loop, *config.udp_ports)
    service = MediaService(config, store)
    runner = web.AppRunner(service.app(), access_log=None)
    loop.run_until_complete(runner.setup())
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, config.host, config.port)
    loop.run_until_complete(site.start())
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("telefhir media service on http://%s:%s%s (%s)", config.host, config.port,
             BASE_PATH, config.mode)
    try:
        loop.run_until_complete(stopping.wait())
    finally:
        loop.run_until_complete(runner.cleanup())
        store.close()
        loop.close()
