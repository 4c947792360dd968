"""The `telefhir` command: serve, load, reindex, and the commands plugins add (the SMART
layer's users, apps and keys)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

CLI_MODULES = ("smart_apps.cli", "hl7v2_gateway.cli")
"""Modules whose `register(subparsers, default_db)` adds commands of their own."""


def _serve(args: argparse.Namespace) -> int:
    from fhir_server.serve import services
    from fhir_server.serve.supervisor import Supervisor

    if args.grace < 0:
        raise ValueError("--grace must be 0 or more seconds")
    if args.no_auth:
        print(
            "WARNING: --no-auth: the FHIR API is open to anyone who can reach "
            f"{args.host}:{args.port}. Use only for local testing.",
            file=sys.stderr,
        )
    os.environ["TELEFHIR_DB"] = args.db
    os.environ["TELEFHIR_AUTH"] = "0" if args.no_auth else "1"
    if args.base_url:
        os.environ["TELEFHIR_BASE_URL"] = args.base_url
    specs = [services.http_spec(args.host, args.port, args.workers, args.threads,
                                args.backpressure)]
    if args.mllp_port:
        from hl7v2_gateway.settings import load_settings

        load_settings(args.hl7_config)  # a bad file is a usage error, before anything starts
        specs.append(services.mllp_spec(args.db, args.mllp_host or args.host, args.mllp_port,
                                        args.hl7_config))
    if args.hl7_config:  # the FHIR workers' gateway ($ingest-hl7v2, outbound) reads it too
        os.environ["TELEFHIR_HL7_CONFIG"] = args.hl7_config
    if args.media_port:
        from media.options import config_from_args

        media = config_from_args(args, args.db, args.media_host or args.host, args.media_port)
        specs.append(services.media_spec(media))
        os.environ["TELEFHIR_MEDIA_URL"] = args.media_url or os.environ.get(
            "TELEFHIR_MEDIA_URL", services.media_url(media.host, media.port))
    elif args.media_url:
        os.environ["TELEFHIR_MEDIA_URL"] = args.media_url
    services.check_ports(specs)
    # Create the schema once before the services start.
    from fhir_server.app import open_store

    open_store(args.db).close()
    print(f"telefhir serving http://{args.host}:{args.port}/fhir (store {args.db})",
          file=sys.stderr)
    return Supervisor(specs, args.grace).run()


def _load(args: argparse.Namespace) -> int:
    from fhir_server.loader import load_files

    return load_files(args.db, args.files, progress=not args.quiet)


def _reindex(args: argparse.Namespace) -> int:
    from fhir_server.app import open_store

    store = open_store(args.db)
    n = 0
    for n in store.reindex(args.type):
        print(f"\rreindexed up to row {n}", end="", file=sys.stderr)
    print(f"\nreindex done (last row {n})", file=sys.stderr)
    store.close()
    return 0


def _media_serve(args: argparse.Namespace) -> int:
    from media.options import config_from_args
    from media.service import run

    run(config_from_args(args, args.db, args.host, args.port))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `telefhir` console script."""
    default_db = os.environ.get("TELEFHIR_DB", "sqlite:///var/telefhir.db")
    parser = argparse.ArgumentParser(prog="telefhir", description="telefhir FHIR R4 server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the FHIR API at http://HOST:PORT/fhir")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--db", default=default_db,
                       help="sqlite:///FILE (default sqlite:///var/telefhir.db) or postgresql://…")
    serve.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="worker processes (default: one per core)")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker")
    serve.add_argument("--backpressure", type=int, default=None,
                       help="requests a worker admits at once (default: --threads); more wait "
                            "in the socket queue instead of contending for the GIL")
    serve.add_argument("--base-url", default=None,
                       help="public base URL when behind a proxy, e.g. https://h/fhir")
    serve.add_argument("--no-auth", action="store_true",
                       help="serve an open API (no authorization); prints a warning")
    serve.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                       help="on SIGTERM/SIGINT, time given to in-flight work before the "
                            "services are killed (default 30)")
    serve.add_argument("--mllp-port", type=int, default=2575,
                       help="HL7 v2 MLLP listener port (default 2575; 0 turns it off)")
    serve.add_argument("--mllp-host", default=None, help="MLLP listener address (default --host)")
    serve.add_argument("--hl7-config", default=None,
                       help="HL7 gateway configuration file (TOML; default TELEFHIR_HL7_CONFIG)")
    serve.add_argument("--media-host", default=None,
                       help="media service address (default --host)")
    serve.add_argument("--media-url", default=None,
                       help="the media service's URL as participants reach it (default "
                            "TELEFHIR_MEDIA_URL, else http://MEDIA_HOST:MEDIA_PORT/media)")
    from media.options import add_arguments as add_media_arguments

    add_media_arguments(serve, prefix="media-")
    serve.set_defaults(fn=_serve)

    load = sub.add_parser("load", help="load transaction/collection Bundles or NDJSON files")
    load.add_argument("files", nargs="+")
    load.add_argument("--db", default=default_db)
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    load.set_defaults(fn=_load)

    reindex = sub.add_parser("reindex", help="rebuild search index rows from stored resources")
    reindex.add_argument("--db", default=default_db)
    reindex.add_argument("--type", default=None, help="only this resource type")
    reindex.set_defaults(fn=_reindex)

    media = sub.add_parser("media", help="the video visit media service (WebRTC relay)")
    media_sub = media.add_subparsers(dest="media_command", required=True)
    media_serve = media_sub.add_parser(
        "serve", help="run the media service alone (telefhir serve also starts it)")
    media_serve.add_argument("--db", default=default_db)
    media_serve.add_argument("--host", default="127.0.0.1")
    from media.options import DEFAULT_PORT, add_arguments

    media_serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    add_arguments(media_serve)
    media_serve.set_defaults(fn=_media_serve)

    for module in CLI_MODULES:  # by name: fhir_server imports no plugin package
        importlib.import_module(module).register(sub, default_db)

    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except ValueError as exc:
        print(f"telefhir: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
