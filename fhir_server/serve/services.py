"""What `telefhir serve` runs: one ChildSpec per service, each started as
`python -m fhir_server.serve.child SPEC` (a fresh interpreter, never a fork of the supervisor),
and the entry point each runs in its child.

Targets are named by string so that `fhir_server` imports no plugin package (hl7v2_gateway,
media) until the child that runs it starts."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from typing import Any

GRANIAN_PID_ENV = "TELEFHIR_SERVE_GRANIAN_PID"
"""Set by the HTTP child for its granian workers: the pid their parent must have."""


@dataclass(frozen=True)
class ChildSpec:
    """One supervised service: a `module:function` called with `kwargs` in its own process,
    ready once something accepts TCP connections on `host`:`port`."""

    name: str
    target: str
    host: str
    port: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    option: str = "--port"  # the `telefhir serve` option that sets the port

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def probe_host(self) -> str:
        """Where to connect to check readiness (a wildcard address is probed on loopback)."""
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)


def check_ports(specs: list[ChildSpec]) -> None:
    """ValueError unless every service has a TCP port of its own."""
    by_port: dict[int, str] = {}
    for spec in specs:
        if not 0 < spec.port < 65536:
            off = "" if spec.option == "--port" else "; 0 turns it off"
            raise ValueError(f"{spec.option} {spec.port} is not a TCP port (1-65535{off})")
        if spec.port in by_port:
            raise ValueError(f"{by_port[spec.port]} and {spec.option} are both {spec.port}")
        by_port[spec.port] = spec.option


def http_spec(host: str, port: int, workers: int, threads: int,
              backpressure: int | None) -> ChildSpec:
    return ChildSpec("http", "fhir_server.serve.services:run_http", host, port,
                     {"host": host, "port": port, "workers": workers, "threads": threads,
                      "backpressure": backpressure or threads})


def mllp_spec(db_url: str, host: str, port: int, hl7_config: str | None) -> ChildSpec:
    return ChildSpec("mllp", "hl7v2_gateway.service:run", host, port,
                     {"db_url": db_url, "host": host, "port": port, "config": hl7_config},
                     "--mllp-port")


def media_spec(config: Any) -> ChildSpec:
    """`config` is a media.options.MediaConfig."""
    return ChildSpec("media", "fhir_server.serve.services:run_media", config.host, config.port,
                     asdict(config), "--media-port")


def run_http(host: str, port: int, workers: int, threads: int, backpressure: int) -> None:
    """granian's main process, serving the FHIR app with `workers` worker processes.

    granian starts its workers from this process; each sets its own parent-death signal when it
    loads the app (fhir_server.serve.worker), so this process dying takes them with it. A worker
    that dies is respawned by granian; if granian gives up (a crash loop) it exits, and the
    supervisor restarts this whole process."""
    from granian import Granian
    from granian.constants import Interfaces

    os.environ[GRANIAN_PID_ENV] = str(os.getpid())
    # Spawned, not forked: a fresh worker has the default SIGTERM (die) until it installs its
    # own handlers, where a forked one would inherit granian main's and lose a stop asked
    # while it starts (granian would then wait for it forever).
    multiprocessing.set_start_method("spawn", force=True)
    Granian(
        "fhir_server.serve.worker:create_wsgi",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        backpressure=backpressure,
        factory=True,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


def run_media(**config: Any) -> None:
    """The media (aiortc) service, from a MediaConfig as a dict."""
    from media.options import MediaConfig
    from media.service import run

    if config.get("udp_ports") is not None:
        config["udp_ports"] = tuple(config["udp_ports"])
    run(MediaConfig(**config))


def media_url(host: str, port: int) -> str:
    """The media service's URL for participants when none is configured (a wildcard address
    becomes loopback: set --media-url for participants on other machines)."""
    probe = ChildSpec("media", "", host, port).probe_host
    shown = f"[{probe}]" if ":" in probe else probe
    return f"http://{shown}:{port}/media"
