"""The granian worker's app factory under `telefhir serve`: the FHIR WSGI app, in a worker
that dies with granian's main process (see fhir_server.serve.deathsig)."""

from __future__ import annotations

import os
import signal
from types import FrameType

from flask import Flask

from fhir_server.serve.deathsig import die_with_parent
from fhir_server.serve.services import GRANIAN_PID_ENV

_stop_asked: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _stop_asked.append(signum)


def create_wsgi() -> Flask:
    """Called by granian in each worker process before it serves.

    granian installs the worker's own SIGTERM/SIGINT handlers only after this returns; a stop
    asked while the app loads (granian's main process stopping during a start or a respawn)
    would otherwise be lost and the worker would serve on, never joined. So it is remembered
    here, and the worker leaves before serving anything."""
    parent = os.environ.get(GRANIAN_PID_ENV)
    if parent:
        die_with_parent(int(parent))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)
    from fhir_server.wsgi import create_wsgi as create

    app = create()
    if _stop_asked:
        os._exit(0)
    return app
