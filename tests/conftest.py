"""Fixtures: `store`, `app`, `server` (a live HTTP server), each over SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from fhir_server.app import create_app, open_store
from fhir_server.config import Config
from fhir_server.store.base import ResourceStore
from tests.pg import pg_server, stop_pg_server

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKENDS = ["sqlite", "postgresql"]
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_pg_server()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL for each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'telefhir.db'}"
    return pg_server().new_database()


@pytest.fixture
def store(db_url: str) -> Iterator[ResourceStore]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def app(store: ResourceStore, db_url: str) -> Flask:
    return create_app(Config(db_url=db_url, auth=False), store=store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class LiveServer:
    """A real HTTP server on 127.0.0.1 serving the app."""

    base: str  # http://127.0.0.1:PORT/fhir
    http: requests.Session

    def url(self, path: str = "") -> str:
        return f"{self.base}/{path}" if path else self.base


@pytest.fixture
def server(app: Flask) -> Iterator[LiveServer]:
    srv: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    session = requests.Session()
    session.headers["Accept"] = "application/fhir+json"
    try:
        yield LiveServer(f"http://127.0.0.1:{srv.server_port}/fhir", session)
    finally:
        session.close()
        srv.shutdown()
        thread.join(5)
        srv.server_close()
