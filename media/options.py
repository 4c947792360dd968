"""The media service's options and configuration, kept free of heavy imports (aiortc) so the
command line stays quick to start."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"
MODES = (PASSTHROUGH, TRANSCODE)

DEFAULT_PORT = 8081
BASE_PATH = "/media"


@dataclass
class MediaConfig:
    """How the media service runs (from `telefhir media serve` or `telefhir serve`)."""

    db_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    mode: str = PASSTHROUGH
    udp_ports: tuple[int, int] | None = None  # inclusive range for ICE host candidates
    ice_servers: list[dict[str, Any]] = field(default_factory=list)  # RTCIceServer-like dicts
    close_poll_s: float = 1.0


def parse_ice_server(text: str) -> dict[str, Any]:
    """`stun:host:3478` or `turn:user:password@host:3478?transport=udp` (the form of the
    --ice-server option) as an RTCIceServer-like dict."""
    scheme, _, rest = text.partition(":")
    if scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(f"ICE server '{text}' must be stun:HOST:PORT or "
                         "turn:USER:PASSWORD@HOST:PORT")
    if "@" in rest and scheme.startswith("turn"):
        creds, _, where = rest.rpartition("@")
        user, _, password = creds.partition(":")
        return {"urls": [f"{scheme}:{where}"], "username": user, "credential": password}
    return {"urls": [text]}


def parse_port_range(text: str) -> tuple[int, int]:
    """`40000-40100` as an inclusive range."""
    lo, sep, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi if sep else lo)
    except ValueError:
        raise ValueError(f"UDP port range '{text}' must be LOW-HIGH, e.g. 40000-40100") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"UDP port range '{text}' must lie within 1024-65535, low <= high")
    return low, high


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The media options, as `telefhir media serve` and `telefhir serve` take them
    (`prefix` is "media-" for the latter: --media-port, --media-mode, ...)."""
    p = prefix
    if p:
        parser.add_argument(f"--{p}port", dest="media_port", type=int, default=DEFAULT_PORT,
                            help=f"media service port (default {DEFAULT_PORT}; 0 turns it off)")
    parser.add_argument(f"--{p}mode", dest="media_mode", choices=MODES, default=PASSTHROUGH,
                        help="relay encoded frames as they are (passthrough, default) or "
                             "decode and re-encode them per subscriber (transcode)")
    parser.add_argument(f"--{p}udp-ports", dest="media_udp_ports", default=None,
                        help="UDP port range for media, e.g. 40000-40100 (default: any)")
    parser.add_argument("--ice-server", dest="ice_servers", action="append", default=[],
                        help="STUN/TURN server given to participants and used by the media "
                             "service: stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT "
                             "(repeatable)")


def config_from_args(args: argparse.Namespace, db_url: str, host: str, port: int) -> MediaConfig:
    return MediaConfig(
        db_url=db_url, host=host, port=port, mode=args.media_mode,
        udp_ports=parse_port_range(args.media_udp_ports) if args.media_udp_ports else None,
        ice_servers=[parse_ice_server(s) for s in args.ice_servers],
    )
