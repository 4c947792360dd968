"""`telefhir hl7 ...`: listen (the MLLP listener alone), errors (the error queue), replay ID,
outbox (outbound messages pending or failed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hl7v2_gateway.settings import load_settings


def _store(args: argparse.Namespace) -> Any:
    from fhir_server.app import open_store

    return open_store(args.db)


def _listen(args: argparse.Namespace) -> int:
    from hl7v2_gateway.service import run

    load_settings(args.hl7_config)  # a bad file is a usage error, before anything starts
    run(args.db, args.host, args.port, args.hl7_config)
    return 0


def _errors(args: argparse.Namespace) -> int:
    from hl7v2_gateway import inbox

    store = _store(args)
    inbox.ensure(store)
    rows = inbox.errors(store, args.limit, args.after)
    if args.json:
        for row in rows:
            print(json.dumps({**row.summary(), **({"message": row.raw} if args.full else {})}))
    else:
        if not rows:
            print("the error queue is empty", file=sys.stderr)
        for row in rows:
            s = row.summary()
            print(f"{s['id']:>6}  {s['received'][:19]}  {s['messageType'] or '-':<9} "
                  f"{(s['controlId'] or '-')[:20]:<20} {s['sender'][:30]}")
            print(f"        {s['reason']}")
            if args.full:
                print("        " + row.raw.replace("\r", "\n        "))
    counts = inbox.counts(store)
    print(f"inbox: {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'empty'}",
          file=sys.stderr)
    store.close()
    return 0


def _replay(args: argparse.Namespace) -> int:
    from fhir_server.app import build_context
    from fhir_server.config import Config
    from hl7v2_gateway import inbox
    from hl7v2_gateway.gateway import Gateway

    store = _store(args)
    ctx = build_context(Config.from_env(db_url=args.db), store)
    gw = Gateway(ctx, load_settings(args.hl7_config))
    status = 1
    for row_id in args.ids:
        try:
            result = gw.replay(row_id)
        except (LookupError, ValueError) as exc:
            print(f"telefhir hl7 replay: {exc}", file=sys.stderr)
            status = 2
            continue
        row = inbox.get(store, row_id)
        if result == "done":
            print(f"{row_id}: done {row.result if row else ''}")
            status = 0 if status != 2 else 2
        else:
            print(f"{row_id}: {result}: {row.reason if row else ''}")
    store.close()
    return status


def _outbox(args: argparse.Namespace) -> int:
    from hl7v2_gateway import outbox

    store = _store(args)
    store.ensure_tables(outbox.outbox_ddl(store))
    statuses = ("pending", "failed", "sent") if args.all else ("pending", "failed")
    rows = outbox.listing(store, statuses, args.limit)
    for row in rows:
        s = row.summary()
        if args.json:
            print(json.dumps(s))
        else:
            print(f"{s['id']:>6}  {s['created'][:19]}  {s['status']:<8} {s['event']:<8} "
                  f"{s['endpoint']:<12} {s['resource']}  attempts={s['attempts']}"
                  + (f"  last error: {s['lastError']}" if s["lastError"] else ""))
    if not rows:
        print("nothing pending or failed", file=sys.stderr)
    store.close()
    return 0


def register(sub: Any, default_db: str) -> None:
    """Add `hl7` and its subcommands to the `telefhir` parser."""
    hl7 = sub.add_parser("hl7", help="the HL7 v2 gateway: listener, error queue, outbox")
    cmds = hl7.add_subparsers(dest="hl7_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=default_db)
        p.add_argument("--hl7-config", default=None,
                       help="gateway configuration file (TOML; default TELEFHIR_HL7_CONFIG)")

    listen = cmds.add_parser("listen", help="run the MLLP listener alone")
    common(listen)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=2575)
    listen.set_defaults(fn=_listen)

    errors = cmds.add_parser("errors", help="list the error queue")
    common(errors)
    errors.add_argument("--limit", type=int, default=100)
    errors.add_argument("--after", type=int, default=0, help="entries after this id")
    errors.add_argument("--json", action="store_true", help="one JSON object a line")
    errors.add_argument("--full", action="store_true", help="with the message text")
    errors.set_defaults(fn=_errors)

    replay = cmds.add_parser("replay", help="reprocess error-queue entries after a fix")
    common(replay)
    replay.add_argument("ids", type=int, nargs="+", metavar="ID")
    replay.set_defaults(fn=_replay)

    out = cmds.add_parser("outbox", help="outbound messages pending or failed")
    common(out)
    out.add_argument("--all", action="store_true", help="sent ones too")
    out.add_argument("--limit", type=int, default=100)
    out.add_argument("--json", action="store_true")
    out.set_defaults(fn=_outbox)
