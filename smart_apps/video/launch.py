"""The clinician's side of the video visit, a SMART app launched from the EHR
(https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch):
`GET /visit/launch?iss=...&launch=...` is its launch URL and its redirect URI.

The page (static/launch.js) does the authorization code flow with PKCE as a public client,
gets a token with the encounter in context, calls `$start-visit` on the encounter's
Appointment, redeems the practitioner's join link and joins the room; its notes field saves a
DocumentReference on the Encounter with the clinician's token. Launched without an encounter,
it shows the practitioner's waiting-room queue of today, live (/visit/queue/events with the
same token), with a "Start visit" button per patient who has checked in.

The app is registered like any SMART app, once per deployment (README "Video visits"):

    telefhir apps register --name "Video visit" --public \\
        --launch-url https://HOST/visit/launch --redirect-uri https://HOST/visit/launch \\
        --scopes "launch openid fhirUser user/Appointment.rus user/Encounter.crus \\
                  user/Patient.rs user/DocumentReference.crus"

The page finds its own client id: the registered app whose launch URL is this page."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, render_template, request

from fhir_server.context import Context
from smart_apps.plugin import records_of

SCOPES = ("launch openid fhirUser user/Appointment.rus user/Encounter.crus user/Patient.rs "
          "user/DocumentReference.crus")
PATH = "/visit/launch"


def client_for(ctx: Context, page_url: str) -> str | None:
    """The client id of the registered app whose launch URL is `page_url` (same host and
    path), else of one whose launch URL has this path."""
    here = urlsplit(page_url)
    candidates = []
    for c in records_of(ctx).clients():
        if not c.launch_url or c.backend:
            continue
        url = urlsplit(c.launch_url)
        if url.path.rstrip("/") == PATH:
            candidates.append((url.netloc != here.netloc, c.client_id))
    return min(candidates)[1] if candidates else None


def blueprint() -> Blueprint:
    bp = Blueprint("visit_launch", __name__, template_folder="templates")

    @bp.get(PATH)
    def launch() -> Response:
        ctx: Context = current_app.extensions["telefhir.context"]
        page = request.base_url
        public, base_path = ctx.config.public_base_url, ctx.config.base_path
        if public and base_path and public.endswith(base_path):  # behind a proxy: its URL
            page = public[: -len(base_path)] + PATH
        client_id = client_for(ctx, page)
        problem = None if client_id else (
            "The video visit app is not registered: telefhir apps register --launch-url "
            f"{page} --redirect-uri {page} (README, Video visits)")
        html = render_template("launch.html", client_id=client_id or "", scopes=SCOPES,
                               redirect_uri=page, problem=problem)
        resp = Response(html, status=200 if client_id else 503,
                        content_type="text/html; charset=utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the code is in the query
        return resp

    return bp
