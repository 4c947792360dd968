"""The media service as a real process: two aiortc peers join a room over WHIP/WHEP with media
tokens and each receives the other's picture; every refusal of the contract; both relay modes,
on both backends. (Rooms and tokens are made here with operations.visits.rooms; `$start-visit`
makes them for real users.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
import requests

from fhir_server.app import open_store
from fhir_server.store.base import ResourceStore
from operations.visits import rooms as visit_rooms
from operations.visits.rooms import Grant
from tests.integration.webrtc_peer import Peer, near, wait_for

RED, BLUE = (200, 30, 30), (30, 60, 200)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Media:
    base: str  # http://127.0.0.1:PORT/media
    store: ResourceStore
    proc: subprocess.Popen[bytes]

    def room(self, capacity: int = 2, encounter: str = "Encounter/e1") -> str:
        with self.store.transaction() as tx:
            return visit_rooms.open_room(tx, encounter, self.base, capacity).room

    def token(self, room: str, participant: str, role: str = "patient",
              ttl_s: int = 600) -> str:
        with self.store.transaction() as tx:
            return visit_rooms.issue_token(
                tx, Grant(room, participant, f"Patient/{participant}", role), ttl_s)

    def peer(self, http: aiohttp.ClientSession, room: str, token: str,
             rgb: tuple[int, int, int] = RED) -> Peer:
        return Peer(http, f"{self.base}/rooms/{room}/whip", f"{self.base}/rooms/{room}/whep",
                    token, rgb)


@pytest.fixture(params=["passthrough", "transcode"])
def media(request: pytest.FixtureRequest, db_url: str) -> Iterator[Media]:
    store = open_store(db_url)
    store.ensure_tables(visit_rooms.ddl(store))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "media", "serve", "--db", db_url,
         "--port", str(port), "--mode", request.param],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/media"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"media service did not start: {err}")
        time.sleep(0.1)
    try:
        yield Media(base, store, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        store.close()


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_two_peers_see_each_other(media: Media) -> None:
    room = media.room()

    async def visit() -> None:
        async with aiohttp.ClientSession() as http:
            a = media.peer(http, room, media.token(room, "a", "practitioner"), RED)
            b = media.peer(http, room, media.token(room, "b"), BLUE)
            try:
                # b subscribes to a before a has joined: a's media flows once a publishes
                assert (await b.subscribe("a")).status == 201
                assert (await a.publish()).status == 201
                assert (await a.subscribe("b")).status == 201
                assert (await b.publish()).status == 201
                assert await wait_for(lambda: a.received["b"].video_frames >= 20
                                      and b.received["a"].video_frames >= 20)
                assert await wait_for(lambda: a.received["b"].audio_frames >= 20
                                      and b.received["a"].audio_frames >= 20)
                # what arrives is the other party's picture
                assert all(near(px, BLUE) for px in a.received["b"].centre[-10:])
                assert all(near(px, RED) for px in b.received["a"].centre[-10:])
            finally:
                await a.close()
                await b.close()

    _run(visit())
    stays = visit_rooms.presence(media.store, room)
    assert {p for p, _, _ in stays} == {"a", "b"}


def test_rejoin_after_a_drop(media: Media) -> None:
    room = media.room()

    async def visit() -> None:
        async with aiohttp.ClientSession() as http:
            a = media.peer(http, room, media.token(room, "a", "practitioner"), RED)
            b = media.peer(http, room, media.token(room, "b"), BLUE)
            try:
                await b.subscribe("a")
                assert (await a.publish()).status == 201
                assert await wait_for(lambda: b.received["a"].video_frames >= 10)
                # a leaves (DELETE of its WHIP resource) and comes back
                location = a.locations[0]
                async with http.delete(media.base.rsplit("/media", 1)[0] + location,
                                       headers={"Authorization": f"Bearer {a.token}"}) as r:
                    assert r.status == 200
                await a.close()
                before = b.received["a"].video_frames
                a2 = media.peer(http, room, a.token, (30, 200, 30))
                assert (await a2.publish()).status == 201
                assert await wait_for(lambda: b.received["a"].video_frames >= before + 10)
                assert near(b.received["a"].centre[-1], (30, 200, 30))
                await a2.close()
            finally:
                await b.close()

    _run(visit())
    stays = [s for s in visit_rooms.presence(media.store, room) if s[0] == "a"]
    assert len(stays) == 2 and stays[0][2] is not None


def test_refusals(media: Media) -> None:
    room = media.room()
    other = media.room(encounter="Encounter/e2")
    whip = f"{media.base}/rooms/{room}/whip"
    sdp = {"Content-Type": "application/sdp"}
    good = media.token(room, "a")

    r = requests.post(whip, data="v=0\r\n", headers=sdp)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = requests.post(whip, data="v=0\r\n", headers={**sdp, "Authorization": "Bearer nope"})
    assert r.status_code == 403
    wrong_room = media.token(other, "a")
    r = requests.post(whip, data="v=0\r\n",
                      headers={**sdp, "Authorization": f"Bearer {wrong_room}"})
    assert r.status_code == 403 and "another room" in r.json()["error"]
    r = requests.post(whip, data="hello", headers={"Authorization": f"Bearer {good}",
                                                   "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = requests.post(whip, data="not sdp", headers={**sdp, "Authorization": f"Bearer {good}"})
    assert r.status_code == 400
    r = requests.post(whip, data="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
                      headers={**sdp, "Authorization": f"Bearer {good}"})
    assert r.status_code == 400
    expired = media.token(room, "a", ttl_s=-1)
    r = requests.post(whip, data="v=0\r\n", headers={**sdp, "Authorization": f"Bearer {expired}"})
    assert r.status_code == 403 and "expired" in r.json()["error"]
    r = requests.patch(f"{whip}/whatever", data="a=candidate",
                       headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 405
    r = requests.delete(f"{whip}/unknown-session", headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 404


def test_room_full_and_closed(media: Media) -> None:
    room = media.room(capacity=2)

    async def visit() -> None:
        async with aiohttp.ClientSession() as http:
            a = media.peer(http, room, media.token(room, "a"))
            b = media.peer(http, room, media.token(room, "b"))
            c = media.peer(http, room, media.token(room, "c"))
            events: list[str] = []

            async def listen() -> None:
                async with http.get(f"{media.base}/rooms/{room}/events",
                                    headers={"Authorization": f"Bearer {a.token}"}) as resp:
                    assert resp.status == 200
                    async for line in resp.content:
                        if line.startswith(b"event: "):
                            events.append(line[7:].decode().strip())

            listener = asyncio.ensure_future(listen())
            try:
                assert (await a.publish()).status == 201
                assert (await b.publish()).status == 201
                resp = await c.publish()
                assert resp.status == 403 and "full" in resp.body_text  # type: ignore[attr-defined]
                with media.store.transaction() as tx:
                    visit_rooms.close_room(tx, room)
                assert await wait_for(lambda: "closed" in events, timeout=10)
                assert await wait_for(lambda: all(pc.connectionState == "closed" or
                                                  pc.connectionState == "failed"
                                                  for pc in a.pcs + b.pcs), timeout=40)
                resp = await a.publish()
                assert resp.status == 410
            finally:
                listener.cancel()
                for p in (a, b, c):
                    await p.close()
            assert events[0] == "state" and "joined" in events

    _run(visit())
    assert all(left is not None for _, _, left in visit_rooms.presence(media.store, room))


def test_sigterm_stops_the_service(media: Media) -> None:
    os.kill(media.proc.pid, signal.SIGTERM)
    assert media.proc.wait(10) == 0
