"""The authorization server raises a SecurityEvent (the audit trail's input, hook point
`security_event`) for each sign-in, token, refresh, reuse, revocation, introspection, lockout
and launch, with who and from where, and never a secret."""

from __future__ import annotations

import requests

from fhir_server.principal import SecurityEvent
from tests.integration.smart_support import PASSWORD, Browser, SmartServer, form_with, token_for


def test_security_events(world: SmartServer) -> None:
    seen: list[SecurityEvent] = []
    ctx = world.app.extensions["telefhir.context"]
    ctx.hooks.register("security_event", lambda _ctx, event: seen.append(event))

    tok = token_for(world, "user/Patient.rs offline_access")
    url = world.config["token_endpoint"]
    data = {"grant_type": "refresh_token", "client_id": tok["client_id"],
            "refresh_token": tok["refresh_token"]}
    assert requests.post(url, data=data).status_code == 200
    assert requests.post(url, data=data).status_code == 400  # reuse
    fresh = token_for(world, "user/Patient.rs offline_access", client_id=tok["client_id"])
    requests.post(world.config["introspection_endpoint"],
                  data={"token": fresh["access_token"], "client_id": tok["client_id"]})
    requests.post(world.config["revocation_endpoint"],
                  data={"token": fresh["access_token"], "client_id": tok["client_id"]})
    b = Browser(world)
    page = b._follow(b.get(f"{world.root}/launcher"))
    for _ in range(5):
        page = b.sign_in(page, "ann", "wrong")
    b.sign_in(page, "doc")
    launch = b.http.get(f"{world.root}/launcher")
    apps_id, _ = world.register("Launchable", launch_url="http://127.0.0.1:1/launch")
    form = form_with(b.http.get(f"{world.root}/launcher").text, "client_id")
    b.http.post(f"{world.root}/launcher", data={**form["fields"], "patient": "pa",
                                                "client_id": apps_id}, allow_redirects=False)
    assert launch.status_code == 200

    actions = {(e.action, e.outcome) for e in seen}
    for expected in (("login", "success"), ("login", "failure"), ("authorize", "success"),
                     ("token", "success"), ("refresh", "success"),
                     ("refresh-reuse", "failure"), ("token", "failure"),
                     ("introspect", "success"), ("revoke", "success"),
                     ("lockout", "success"), ("launch", "success")):
        assert expected in actions, (expected, sorted(actions))
    token_event = next(e for e in seen if e.action == "token" and e.outcome == "success")
    assert token_event.client_id == tok["client_id"] and token_event.username == "doc"
    assert token_event.remote_addr == "127.0.0.1"
    assert token_event.detail["token_id"]
    assert next(e for e in seen if e.action == "lockout").username == "ann"
    launch_event = next(e for e in seen if e.action == "launch")
    assert launch_event.detail["patient"] == "pa"
    secrets = {tok["access_token"], tok["refresh_token"], fresh["access_token"], PASSWORD}
    for e in seen:
        assert not any(s in repr(e) for s in secrets), e
