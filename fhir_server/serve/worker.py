"""The granian worker's app factory under `telefhir serve`: the FHIR WSGI app, in a worker
that dies with granian's main process (see fhir_server.serve.deathsig)."""

from __future__ import annotations

import os

from flask import Flask

from fhir_server.serve.deathsig import die_with_parent
from fhir_server.serve.services import GRANIAN_PID_ENV


def create_wsgi() -> Flask:
    """Called by granian in each worker process before it serves."""
    parent = os.environ.get(GRANIAN_PID_ENV)
    if parent:
        die_with_parent(int(parent))
    from fhir_server.wsgi import create_wsgi as create

    return create()
