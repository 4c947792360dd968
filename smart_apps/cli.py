"""`telefhir users ...`, `telefhir apps ...` and `telefhir keys rotate`: the authorization
server's records from the command line, scriptable and safe while the server runs (they write
the same store tables the server reads on every request)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from fhir_server.app import open_store
from smart_apps import keys as signing_keys
from smart_apps.passwords import hash_password
from smart_apps.records import (
    AuthRecords,
    ClientRecord,
    LaunchRecord,
    digest,
    new_client_id,
    new_secret,
    now_us,
)
from smart_apps.scopes import is_known, split_scope

_FHIR_USER = re.compile(r"(Practitioner|Patient|RelatedPerson|Person|PractitionerRole)/"
                        r"[A-Za-z0-9\-.]{1,64}")
LAUNCH_SECONDS = 3600


def _records(db: str) -> AuthRecords:
    return AuthRecords(open_store(db))


def users_add(args: argparse.Namespace) -> int:
    """`users add USERNAME --fhir-user Practitioner/ID|Patient/ID [--admin]`; the password from
    standard input (one line) when it is not a terminal, else prompted twice."""
    if not _FHIR_USER.fullmatch(args.fhir_user):
        print("telefhir users add: --fhir-user must be Practitioner/ID or Patient/ID "
              f"(got {args.fhir_user!r})", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            print("telefhir users add: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("telefhir users add: the password needs at least 8 characters", file=sys.stderr)
        return 2
    records = _records(args.db)
    records.add_user(args.username, hash_password(password), args.fhir_user, args.admin)
    records.store.close()
    print(json.dumps({"username": args.username, "fhir_user": args.fhir_user,
                      "admin": args.admin}))
    return 0


def _read_jwks(path: str) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"{path} is not a JWK Set (an object with a 'keys' array)")
    from joserfc.jwk import KeySet

    KeySet.import_key_set(data)  # type: ignore[arg-type]  # refuse an unreadable set now
    if any("d" in k for k in data["keys"]):
        raise ValueError(f"{path} holds a private key: register only the public keys")
    return data


def apps_register(args: argparse.Namespace) -> int:
    """`apps register --name NAME --redirect-uri URI... [--launch-url URL]
    [--public | --secret | --jwks-file F | --jwks-url URL] [--backend] [--scopes "..."]`."""
    scopes = split_scope(args.scopes) if args.scopes is not None else None
    unknown = [s for s in scopes or [] if not is_known(s)]
    if unknown:
        print(f"telefhir apps register: unknown scopes: {' '.join(unknown)}", file=sys.stderr)
        return 2
    if not args.redirect_uri and not args.backend:
        print("telefhir apps register: give at least one --redirect-uri (or --backend)",
              file=sys.stderr)
        return 2
    secret = None
    jwks = None
    if args.jwks_file:
        method, jwks = "private_key_jwt", _read_jwks(args.jwks_file)
    elif args.jwks_url:
        method = "private_key_jwt"
    elif args.secret:
        method, secret = "client_secret_basic", new_secret(32)
    elif args.public:
        method = "none"
    else:
        method = "none" if not args.backend else ""
    if args.backend and method != "private_key_jwt":
        print("telefhir apps register: a --backend app signs its assertions: give "
              "--jwks-file or --jwks-url", file=sys.stderr)
        return 2
    rec = ClientRecord(
        client_id=new_client_id(), name=args.name,
        secret_hash=digest(secret) if secret else None, auth_method=method,
        redirect_uris=tuple(args.redirect_uri or ()), launch_url=args.launch_url, jwks=jwks,
        jwks_url=args.jwks_url, backend=args.backend,
        scopes=tuple(scopes) if scopes is not None else None)
    records = _records(args.db)
    records.add_client(rec)
    records.store.close()
    out: dict[str, Any] = {"client_id": rec.client_id, **rec.summary()}
    if secret:
        out["client_secret"] = secret
    print(json.dumps(out, indent=2))
    return 0


def apps_list(args: argparse.Namespace) -> int:
    records = _records(args.db)
    print(json.dumps([c.summary() for c in records.clients()], indent=2))
    records.store.close()
    return 0


def apps_remove(args: argparse.Namespace) -> int:
    records = _records(args.db)
    gone = records.remove_client(args.client_id)
    records.store.close()
    if not gone:
        print(f"telefhir apps remove: no app {args.client_id}", file=sys.stderr)
        return 1
    print(json.dumps({"removed": args.client_id}))
    return 0


def apps_launch(args: argparse.Namespace) -> int:
    """`apps launch CLIENT_ID --user USERNAME --patient ID [--encounter ID]`: the URL an EHR
    opens, `launch_url?iss=...&launch=...` (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch)."""
    from authlib.common.urls import add_params_to_uri

    records = _records(args.db)
    try:
        client = records.client(args.client_id)
        if client is None or not client.launch_url:
            print(f"telefhir apps launch: no app {args.client_id} with a launch URL",
                  file=sys.stderr)
            return 1
        if records.user(args.user) is None:
            print(f"telefhir apps launch: no user {args.user}", file=sys.stderr)
            return 1
        stored = records.store.read("Patient", args.patient)
        if stored is None or stored.deleted:
            print(f"telefhir apps launch: no Patient/{args.patient}", file=sys.stderr)
            return 1
        if args.encounter:
            enc = records.store.read("Encounter", args.encounter)
            if enc is None or enc.deleted:
                print(f"telefhir apps launch: no Encounter/{args.encounter}", file=sys.stderr)
                return 1
        launch = new_secret(24)
        records.add_launch(launch, LaunchRecord(args.client_id, args.user, args.patient,
                                                args.encounter,
                                                now_us() + LAUNCH_SECONDS * 1_000_000))
        _launch_event(records, args)
    finally:
        records.store.close()
    iss = args.base_url.rstrip("/")
    print(add_params_to_uri(client.launch_url, [("iss", iss), ("launch", launch)]))
    return 0


def _launch_event(records: AuthRecords, args: argparse.Namespace) -> None:
    """The launch as a SecurityEvent, through the plugins' security_event hooks (the audit
    trail), as the launcher page raises it."""
    from fhir_server.app import build_context
    from fhir_server.config import Config
    from fhir_server.principal import SecurityEvent

    ctx = build_context(Config.from_env(db_url=args.db), records.store)
    ctx.hooks.run("security_event", ctx, SecurityEvent(
        action="launch", outcome="success", client_id=args.client_id, username=args.user,
        detail={k: v for k, v in (("patient", args.patient), ("encounter", args.encounter),
                                  ("via", "telefhir apps launch")) if v}))


def keys_rotate(args: argparse.Namespace) -> int:
    records = _records(args.db)
    kid = signing_keys.rotate(records)
    records.store.close()
    print(json.dumps({"active_kid": kid}))
    return 0


def register(sub: Any, default_db: str) -> None:
    """Add the `users`, `apps` and `keys` commands to the `telefhir` parser."""
    default_base = os.environ.get("TELEFHIR_BASE_URL", "http://localhost:8080/fhir")

    users = sub.add_parser("users", help="people who sign in (SMART apps, the launcher)")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add a user (password from stdin, or prompted)")
    add.add_argument("username")
    add.add_argument("--fhir-user", required=True, help="Practitioner/ID or Patient/ID")
    add.add_argument("--admin", action="store_true", help="may read the audit trail")
    add.add_argument("--db", default=default_db)
    add.set_defaults(fn=users_add)

    apps = sub.add_parser("apps", help="registered SMART apps")
    asub = apps.add_subparsers(dest="apps_command", required=True)
    reg = asub.add_parser("register", help="register an app; prints its client_id as JSON")
    reg.add_argument("--name", required=True)
    reg.add_argument("--redirect-uri", nargs="+", default=[], metavar="URI")
    reg.add_argument("--launch-url", default=None, help="where an EHR launch opens the app")
    kind = reg.add_mutually_exclusive_group()
    kind.add_argument("--public", action="store_true", help="a public client (PKCE only)")
    kind.add_argument("--secret", action="store_true",
                      help="a confidential client with a generated client_secret")
    kind.add_argument("--jwks-file", default=None, help="public JWK Set of the app's keys")
    kind.add_argument("--jwks-url", default=None, help="URL of the app's public JWK Set")
    reg.add_argument("--backend", action="store_true",
                     help="SMART Backend Services (client_credentials, system/ scopes)")
    reg.add_argument("--scopes", default=None, help="the scopes the app may be granted")
    reg.add_argument("--db", default=default_db)
    reg.set_defaults(fn=apps_register)
    lst = asub.add_parser("list", help="list registered apps as JSON")
    lst.add_argument("--db", default=default_db)
    lst.set_defaults(fn=apps_list)
    rm = asub.add_parser("remove", help="remove an app and revoke its tokens")
    rm.add_argument("client_id", metavar="ID")
    rm.add_argument("--db", default=default_db)
    rm.set_defaults(fn=apps_remove)
    launch = asub.add_parser("launch", help="print the EHR launch URL of an app")
    launch.add_argument("client_id", metavar="CLIENT_ID")
    launch.add_argument("--user", required=True, help="the clinician launching it")
    launch.add_argument("--patient", required=True, help="Patient id in context")
    launch.add_argument("--encounter", default=None, help="Encounter id in context")
    launch.add_argument("--base-url", default=default_base,
                        help="the FHIR base URL the app is given as iss "
                             "(default TELEFHIR_BASE_URL or http://localhost:8080/fhir)")
    launch.add_argument("--db", default=default_db)
    launch.set_defaults(fn=apps_launch)

    keys = sub.add_parser("keys", help="the authorization server's signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    rot = ksub.add_parser("rotate", help="make a new signing key; old tokens stay valid")
    rot.add_argument("--db", default=default_db)
    rot.set_defaults(fn=keys_rotate)
