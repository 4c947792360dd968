"""Plugin entry point of the video visit app: the join links' pages and redemption, the
waiting room (queue and patient page) and the clinician's SMART launch page."""

from __future__ import annotations

from flask import Flask

from fhir_server.context import Context


def install(ctx: Context) -> None:
    """Nothing to hook: the app's pages are web routes (install_web)."""


def install_web(app: Flask, ctx: Context) -> None:
    from smart_apps.video import join, launch, waiting_web

    app.register_blueprint(join.blueprint())
    app.register_blueprint(launch.blueprint())
    app.register_blueprint(waiting_web.blueprint())
