"""The waiting room over HTTP: the clinician's live queue and the patient's waiting page.

    GET  /visit/queue?practitioner=Practitioner/1[&date=YYYY-MM-DD]          the queue, JSON
    GET  /visit/queue/events?practitioner=Practitioner/1[&date=...]          the same, live
    GET  /visit/wait/{pass}                 the patient's waiting page (local times)
    POST /visit/wait/{pass}/heartbeat       "I am still here"
    GET  /visit/wait/{pass}/events          waiting, then `ready` with a single-use joinUrl

The queue is read with the caller's own SMART bearer token (user/Appointment.rs, and
user/Encounter.rs and user/Patient.rs for arrival times and names): it is three FHIR searches
through the dispatcher, so scopes and row restrictions apply as to any search, and a token
that is revoked ends the stream. "Today" is the practitioner's today (their timezone
extension: operations.visits.timezones).

Live streams are Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-
events.html) served by the WSGI worker. Each holds one worker thread, so they are bounded:
at most TELEFHIR_STREAMS at once per server process (503 with Retry-After beyond), each at
most TELEFHIR_STREAM_SECONDS long (then the client reconnects; `retry:` says when). A stream
re-reads the store every TELEFHIR_QUEUE_POLL seconds and sends an event only when the queue
changed (a check-in, a start, a heartbeat lost): the store is the one truth every process
shares, so a check-in served by another worker or node is seen too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from fhir_server.context import Context
from fhir_server.dispatcher import Dispatcher
from fhir_server.request import FhirRequest, FhirResponse
from operations.visits import rooms, waiting
from operations.visits.queue import queue_items
from operations.visits.settings import settings
from operations.visits.start_visit import people
from operations.visits.timezones import day_bounds, local, today, zone_of
from operations.visits.virtual import is_virtual
from resources import json_numbers

_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()
Snapshot = Callable[[], tuple[int, dict[str, Any]]]


def _slots() -> threading.BoundedSemaphore:
    """This process's live-stream slots (TELEFHIR_STREAMS)."""
    n = max(1, settings().streams)
    with _SLOTS_LOCK:
        sem = _SLOTS.get(n)
        if sem is None:
            sem = _SLOTS[n] = threading.BoundedSemaphore(n)
        return sem


def _json(status: int, body: dict[str, Any], ctype: str = "application/json") -> Response:
    resp = Response(json_numbers.dumps(body), status=status, content_type=ctype)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _outcome(status: int, code: str, text: str) -> Response:
    return _json(status, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]},
        "application/fhir+json")


def _resource(resp: FhirResponse) -> dict[str, Any]:
    """The answer as plain JSON (a search Bundle's entries hold the stored bytes as
    orjson fragments)."""
    raw = json_numbers.dumps(resp.resource) if resp.resource is not None else resp.raw or b"{}"
    out: dict[str, Any] = json_numbers.loads(raw)
    return out


class QueueReader:
    """Reads one practitioner's queue with one caller's Authorization header."""

    def __init__(self, ctx: Context, dispatcher: Dispatcher, base_url: str,
                 auth: str | None, practitioner: str, day: date | None,
                 remote_addr: str | None = None) -> None:
        self.ctx, self.dispatcher, self.base_url = ctx, dispatcher, base_url
        self.auth, self.practitioner, self.day = auth, practitioner, day
        self.remote_addr = remote_addr
        # each search is audited the first time this reader runs it; a live stream's later
        # polls repeat the same queries (the audit trail records queries, BALP Query) and
        # would otherwise write several AuditEvents a second for as long as a queue is open
        self._audited: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def _search(self, res_type: str, query: list[tuple[str, str]]) -> FhirResponse:
        headers = {"accept": "application/fhir+json"}
        if self.auth:
            headers["authorization"] = self.auth
        key = (res_type, tuple(query))
        req = FhirRequest(method="GET", path=res_type, query=[*query, ("_count", "1000")],
                          headers=headers, base_url=self.base_url, remote_addr=self.remote_addr,
                          audited=key not in self._audited)
        resp = self.dispatcher.handle(req)
        if resp.status < 400:
            self._audited.add(key)
        return resp

    def _entries(self, resp: FhirResponse) -> list[dict[str, Any]]:
        if resp.status != 200:
            return []
        return [e["resource"] for e in _resource(resp).get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)]

    def __call__(self) -> tuple[int, dict[str, Any]]:
        """(200, the queue) or (status, an OperationOutcome)."""
        rtype, _, rid = self.practitioner.partition("/")
        stored = self.ctx.store.read("Practitioner", rid) if rtype == "Practitioner" and \
            rid else None
        if stored is None or stored.deleted or stored.body is None:
            return 404, _outcome_body("not-found", f"{self.practitioner} is not a known "
                                      "Practitioner")
        tz = zone_of(json_numbers.loads(stored.body))
        day = self.day or today(tz)
        lo, hi = day_bounds(day, tz)
        found = self._search("Appointment", [("actor", self.practitioner),
                                             ("date", f"ge{lo}"), ("date", f"lt{hi}")])
        if found.status != 200:
            return found.status, _resource(found)
        cfg = settings()
        appts = [a for a in self._entries(found) if is_virtual(a, cfg)]
        ids = [str(a["id"]) for a in appts]
        encounters: list[dict[str, Any]] = []
        patients: dict[str, dict[str, Any]] = {}
        if ids:
            encounters = self._entries(self._search(
                "Encounter", [("appointment", ",".join(f"Appointment/{i}" for i in ids))]))
            pids = sorted({ref.split("/", 1)[1] for a in appts for _, ref, _ in people(a)
                           if ref.startswith("Patient/")})
            if pids:
                patients = {f"Patient/{p['id']}": p for p in self._entries(
                    self._search("Patient", [("_id", ",".join(pids))]))}
        now = datetime.now(UTC)
        items = queue_items(appts, encounters, patients, waiting.last_seen(self.ctx.store, ids),
                            tz, now, cfg.heartbeat_gone_s)
        return 200, {"practitioner": self.practitioner, "date": day.isoformat(),
                     "zone": tz.key, "generated": now.isoformat(timespec="seconds"),
                     "goneAfterSeconds": cfg.heartbeat_gone_s, "queue": items}


def _outcome_body(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _sse(event: str, data: dict[str, Any], seq: int) -> bytes:
    return b"event: " + event.encode() + b"\nid: " + str(seq).encode() + b"\ndata: " + \
        json_numbers.dumps(data) + b"\n\n"


def _changes(payload: dict[str, Any]) -> bytes:
    """What an update is about: the queue without the clock (waits grow every second; the
    client counts them from `arrived`), or the patient's state."""
    if "queue" not in payload:
        return json_numbers.dumps(payload)
    return json_numbers.dumps([{k: v for k, v in i.items() if k != "waitedSeconds"}
                         for i in payload["queue"]])


def stream(snapshot: Snapshot, first: dict[str, Any], event: Callable[[dict[str, Any]], str],
           done: Callable[[dict[str, Any]], bool], release: Callable[[], None]) -> Iterator[bytes]:
    """The SSE body: `first`, then each changed snapshot, a comment line between, until
    `done`, an error, or the stream's life ends. Releases its slot however it ends (a client
    that goes away closes the iterator)."""
    cfg = settings()
    try:
        seq = 1
        retry = f"retry: {int(cfg.queue_poll_s * 1000) + 1000}\n".encode()
        yield retry + _sse(event(first), first, seq)
        if done(first):
            return
        last = _changes(first)
        deadline = time.monotonic() + cfg.stream_s
        while time.monotonic() < deadline:
            time.sleep(cfg.queue_poll_s)
            status, payload = snapshot()
            if status != 200:
                yield _sse("error", {"status": status, **payload}, seq + 1)
                return
            key = _changes(payload)
            if key != last:
                seq += 1
                last = key
                yield _sse(event(payload), payload, seq)
                if done(payload):
                    return
            else:  # a comment line each poll: a client that went away is noticed (the
                yield b":\n\n"  # write fails) and its slot freed within one poll
        yield _sse("reconnect", {"after": cfg.stream_s}, seq + 1)
    finally:
        release()


def _event_stream(snapshot: Snapshot, first: dict[str, Any],
                  event: Callable[[dict[str, Any]], str],
                  done: Callable[[dict[str, Any]], bool]) -> Response:
    slots = _slots()
    if not slots.acquire(blocking=False):
        resp = _outcome(503, "transient", "Too many live streams on this server process; "
                        "retry shortly (TELEFHIR_STREAMS)")
        resp.headers["Retry-After"] = "5"
        return resp
    resp = Response(stream(snapshot, first, event, done, slots.release),
                    content_type="text/event-stream; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # proxies must not hold the events back
    return resp


class WaitingState:
    """What the patient holding a waiting-room pass sees: waiting, ready (a fresh single-use
    join link once the room is open) or ended."""

    def __init__(self, ctx: Context, secret: str, root: str) -> None:
        self.ctx, self.secret, self.root = ctx, secret, root

    def __call__(self) -> tuple[int, dict[str, Any]]:
        return self.state(issue=True)

    def peek(self) -> tuple[int, dict[str, Any]]:
        """The state without issuing a join link (the page itself never hands one out)."""
        return self.state(issue=False)

    def state(self, issue: bool) -> tuple[int, dict[str, Any]]:
        store = self.ctx.store
        try:
            found = waiting.pass_of(store, self.secret)
        except rooms.LinkRefused as exc:
            return exc.status, {"error": exc.reason}
        stored = store.read("Appointment", found.appointment)
        if stored is None or stored.deleted or stored.body is None:
            return 410, {"error": "This visit is no longer booked"}
        appt = json_numbers.loads(stored.body)
        patient = store.read(*found.patient.split("/", 1))
        tz = zone_of(json_numbers.loads(patient.body) if patient and patient.body else None)
        state: dict[str, Any] = {"state": "waiting", "appointment": found.appointment,
                                 "status": appt.get("status"), "start": appt.get("start"),
                                 "startLocal": local(appt.get("start"), tz)}
        if appt.get("status") in ("fulfilled", "cancelled", "noshow", "entered-in-error"):
            return 200, {**state, "state": "ended"}
        enc = self._encounter(found.appointment)
        if enc is None or enc.get("status") != "in-progress":
            return 200, state
        room = rooms.room_for_encounter(store, f"Encounter/{enc['id']}")
        if room is None:
            return 200, state
        if not issue:
            return 200, {**state, "state": "ready"}
        pid = f"patient-{found.patient.split('/', 1)[1]}"
        with store.transaction() as tx:
            link = rooms.issue_link(tx, rooms.Grant(room.room, pid, found.patient, "patient"),
                                    settings().link_ttl_s)
        return 200, {**state, "state": "ready", "encounter": f"Encounter/{enc['id']}",
                     "joinUrl": f"{self.root}/visit/join/{link}"}

    def _encounter(self, appointment: str) -> dict[str, Any] | None:
        store = self.ctx.store
        for _pk, eid in self.ctx.search_engine.find_ids(
                store, "Encounter", [("appointment", f"Appointment/{appointment}")]):
            s = store.read("Encounter", eid)
            if s is not None and not s.deleted and s.body is not None:
                enc: dict[str, Any] = json_numbers.loads(s.body)
                if enc.get("status") not in ("cancelled", "entered-in-error"):
                    return enc
        return None


def _ctx() -> Context:
    ctx: Context = current_app.extensions["telefhir.context"]
    return ctx


def _fhir_base() -> str:
    ctx = _ctx()
    return ctx.config.public_base_url or request.host_url.rstrip("/") + ctx.config.base_path


def _root() -> str:
    base, path = _fhir_base(), _ctx().config.base_path
    return base[: -len(path)] if path and base.endswith(path) else base


def _queue_reader() -> QueueReader | Response:
    practitioner = request.args.get("practitioner", "")
    if not practitioner.startswith("Practitioner/"):
        return _outcome(400, "required", "Say whose queue: practitioner=Practitioner/{id}")
    day = None
    if request.args.get("date"):
        try:
            day = date.fromisoformat(request.args["date"])
        except ValueError:
            return _outcome(400, "value", f"date must be YYYY-MM-DD, not {request.args['date']}")
    return QueueReader(_ctx(), current_app.extensions["telefhir.dispatcher"], _fhir_base(),
                       request.headers.get("Authorization"), practitioner, day,
                       request.remote_addr)


def blueprint() -> Blueprint:
    bp = Blueprint("visit_waiting", __name__, template_folder="templates")

    @bp.get("/visit/queue")
    def queue() -> Response:
        reader = _queue_reader()
        if isinstance(reader, Response):
            return reader
        status, body = reader()
        return _json(status, body, "application/json" if status == 200 else
                     "application/fhir+json")

    @bp.get("/visit/queue/events")
    def queue_events() -> Response:
        reader = _queue_reader()
        if isinstance(reader, Response):
            return reader
        status, body = reader()
        if status != 200:  # refused before the stream starts: a plain answer
            return _json(status, body, "application/fhir+json")
        return _event_stream(reader, body, lambda _p: "queue", lambda _p: False)

    @bp.get("/visit/wait/<secret>")
    def wait_page(secret: str) -> Response:
        try:
            found = waiting.pass_of(_ctx().store, secret)
            problem = None
        except rooms.LinkRefused as exc:
            found, problem = None, exc
        info: dict[str, Any] = {}
        status = problem.status if problem else 200
        reason = problem.reason if problem else None
        if found is not None:
            status, info = WaitingState(_ctx(), secret, _root()).peek()
            reason = None if status == 200 else str(info.get("error"))
        html = render_template("wait.html", problem=reason, info=info)
        resp = Response(html, status=status, content_type="text/html; charset=utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @bp.post("/visit/wait/<secret>/heartbeat")
    def heartbeat(secret: str) -> Response:
        try:
            with _ctx().store.transaction() as tx:
                found = waiting.heartbeat(tx, secret)
        except rooms.LinkRefused as exc:
            return _json(exc.status, {"error": exc.reason})
        return _json(200, {"appointment": f"Appointment/{found.appointment}",
                           "seen": datetime.now(UTC).isoformat(timespec="seconds")})

    @bp.get("/visit/wait/<secret>/events")
    def wait_events(secret: str) -> Response:
        state = WaitingState(_ctx(), secret, _root())
        status, first = state()
        if status != 200:
            return _json(status, first)
        return _event_stream(state, first, lambda p: str(p.get("state", "waiting")),
                             lambda p: p.get("state") in ("ready", "ended"))

    return bp
