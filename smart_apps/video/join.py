"""The join link of a video visit: `GET /visit/join/{secret}` shows the visit page and never
consumes the link (mail scanners and chat previews fetch links); `POST` of it with
`Accept: application/json` redeems it once and answers what a WebRTC client needs:

    {"room", "participant", "role", "reference", "token", "whip", "whep", "iceServers",
     "participants": [{"id", "reference", "role"}], "events"}

A second redemption, an expired link, or a link of a closed room is refused (403/410, JSON
with the reason). The media token it gives works only for that room and participant."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from fhir_server.context import Context
from operations.visits import rooms
from operations.visits.settings import settings
from operations.visits.timezones import local, zone_of
from resources import json_numbers


def _ctx() -> Context:
    ctx: Context = current_app.extensions["telefhir.context"]
    return ctx


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the secret is in the path
    return resp


def _refused(exc: rooms.LinkRefused) -> Response:
    resp = jsonify({"error": exc.reason})
    resp.status_code = exc.status
    return _no_store(resp)


def ice_servers() -> list[dict[str, Any]]:
    """The ICE servers for browsers (RTCIceServer dictionaries), from the settings."""
    out: list[dict[str, Any]] = []
    for url in settings().ice_servers:
        scheme, _, rest = url.partition(":")
        if scheme.startswith("turn") and "@" in rest:
            creds, _, where = rest.rpartition("@")
            user, _, password = creds.partition(":")
            out.append({"urls": [f"{scheme}:{where}"], "username": user,
                        "credential": password})
        else:
            out.append({"urls": [url]})
    return out


def joining(grant: rooms.Grant, room: rooms.Room, token: str) -> dict[str, Any]:
    """The JSON a participant joins with (also what the clinician's video app gets)."""
    q = _ctx().store
    others = [{"id": pid, "reference": ref, "role": role}
              for pid, (ref, role) in sorted(rooms.participants(q, room.room).items())]
    base = f"{room.media_url}/rooms/{room.room}"
    return {"room": room.room, "participant": grant.participant, "role": grant.role,
            "reference": grant.reference, "token": token, "whip": f"{base}/whip",
            "whep": f"{base}/whep", "events": f"{base}/events", "iceServers": ice_servers(),
            "participants": others}


def _read(ref: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    stored = _ctx().store.read(rtype, rid) if rtype and rid else None
    if stored is None or stored.deleted or stored.body is None:
        return None
    body: dict[str, Any] = json_numbers.loads(stored.body)
    return body


def scheduled(grant: rooms.Grant) -> dict[str, str] | None:
    """When the visit of a link was booked for, in the time zone of the link's holder."""
    room = rooms.get_room(_ctx().store, grant.room)
    enc = _read(room.encounter) if room else None
    for a in (enc or {}).get("appointment") or []:
        appt = _read(str(a.get("reference") or ""))
        if appt and appt.get("start"):
            return local(appt["start"], zone_of(_read(grant.reference)))
    return None


def blueprint() -> Blueprint:
    bp = Blueprint("visit_join", __name__, template_folder="templates",
                   static_folder="static", static_url_path="/visit/static")

    @bp.get("/visit/join/<secret>")
    def show(secret: str) -> Response | tuple[str, int]:
        try:
            grant = rooms.peek_link(_ctx().store, secret)
            problem = None
        except rooms.LinkRefused as exc:
            grant, problem = None, exc
        html = render_template("visit.html", grant=grant,
                               problem=problem.reason if problem else None,
                               when=scheduled(grant) if grant else None)
        resp = Response(html, status=problem.status if problem else 200,
                        content_type="text/html; charset=utf-8")
        return _no_store(resp)

    @bp.post("/visit/join/<secret>")
    def redeem(secret: str) -> Response:
        if "application/json" not in (request.headers.get("Accept") or ""):
            resp = jsonify({"error": "Redeem a join link with Accept: application/json"})
            resp.status_code = 406
            return _no_store(resp)
        store = _ctx().store
        try:
            with store.transaction() as tx:
                grant, token = rooms.redeem_link(tx, secret, settings().token_ttl_s)
                room = rooms.get_room(tx, grant.room)
        except rooms.LinkRefused as exc:
            return _refused(exc)
        assert room is not None
        return _no_store(jsonify(joining(grant, room, token)))

    return bp
