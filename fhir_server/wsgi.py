"""WSGI entry point for granian (and any WSGI server): configuration from TELEFHIR_* variables."""

from __future__ import annotations

from flask import Flask

from fhir_server.app import create_app
from fhir_server.config import Config


def create_wsgi() -> Flask:
    """Factory used by `telefhir serve` in each worker process."""
    return create_app(Config.from_env())
