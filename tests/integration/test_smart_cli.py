"""`telefhir users`, `apps` and `keys` against the database of a running server: what a script
registering apps and users sees, and what the server does with it at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.integration.smart_support import (
    Browser,
    SmartServer,
    bearer,
    callback_params,
    exchange,
    pkce,
)

TELEFHIR = Path(sys.executable).parent / "telefhir"


def cli(*args: str, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TELEFHIR), *args], input=stdin, capture_output=True, text=True,
                          check=check)


def test_users_apps_and_launch_while_serving(world: SmartServer, db_url: str) -> None:
    out = cli("users", "add", "carol", "--fhir-user", "Practitioner/dr1", "--db", db_url,
              stdin="a long enough password\n")
    assert json.loads(out.stdout) == {"username": "carol", "fhir_user": "Practitioner/dr1",
                                      "admin": False}
    bad = cli("users", "add", "dave", "--fhir-user", "Organization/1", "--db", db_url,
              stdin="a long enough password\n", check=False)
    assert bad.returncode == 2 and "Practitioner/ID" in bad.stderr
    short = cli("users", "add", "erin", "--fhir-user", "Patient/pa", "--db", db_url,
                stdin="short\n", check=False)
    assert short.returncode == 2

    reg = json.loads(cli("apps", "register", "--name", "Script app", "--redirect-uri",
                         "http://127.0.0.1:1/callback", "http://127.0.0.1:1/other",
                         "--launch-url", "http://127.0.0.1:1/launch", "--secret",
                         "--scopes", "launch openid fhirUser patient/*.rs", "--db",
                         db_url).stdout)
    cid, secret = reg["client_id"], reg["client_secret"]
    assert reg["redirect_uris"] == ["http://127.0.0.1:1/callback", "http://127.0.0.1:1/other"]
    listed = json.loads(cli("apps", "list", "--db", db_url).stdout)
    assert [a["client_id"] for a in listed if a["name"] == "Script app"] == [cid]
    assert all("client_secret" not in a for a in listed)
    assert "secret_hash" not in cli("apps", "list", "--db", db_url).stdout

    # the new user signs in to the new app right away, through an EHR launch from the CLI
    launch_url = cli("apps", "launch", cid, "--user", "carol", "--patient", "pb",
                     "--db", db_url, "--base-url", world.base).stdout.strip()
    launch = launch_url.split("launch=")[1]
    verifier, challenge = pkce()
    url = world.authorize_url(cid, "launch openid fhirUser patient/*.rs user/*.cruds",
                              challenge, launch=launch)
    b = Browser(world)
    params = callback_params(b.authorize(url, "carol", password="a long enough password"))
    tok = exchange(world, params["code"], verifier, cid, secret=secret).json()
    assert tok["patient"] == "pb"
    assert tok["scope"] == "launch openid fhirUser patient/*.rs"  # user/*.cruds not allowed
    assert requests.get(world.url("Observation/ob1"), headers=bearer(tok)).status_code == 200

    # a launch for an unknown patient or user is refused
    assert cli("apps", "launch", cid, "--user", "carol", "--patient", "nobody", "--db",
               db_url, check=False).returncode == 1
    assert cli("apps", "launch", cid, "--user", "nobody", "--patient", "pa", "--db",
               db_url, check=False).returncode == 1

    # removing the app revokes what it holds
    assert json.loads(cli("apps", "remove", cid, "--db", db_url).stdout) == {"removed": cid}
    assert requests.get(world.url("Observation/ob1"), headers=bearer(tok)).status_code == 401
    assert cli("apps", "remove", cid, "--db", db_url, check=False).returncode == 1


def test_register_public_jwks_and_backend(world: SmartServer, db_url: str,
                                          tmp_path: Path) -> None:
    pub = json.loads(cli("apps", "register", "--name", "Public", "--redirect-uri",
                         "http://127.0.0.1:1/cb", "--public", "--db", db_url).stdout)
    assert pub["token_endpoint_auth_method"] == "none" and "client_secret" not in pub
    no_keys = cli("apps", "register", "--name", "B", "--backend", "--db", db_url, check=False)
    assert no_keys.returncode == 2 and "--jwks" in no_keys.stderr
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "pub.json").write_text(json.dumps({"keys": [jwk]}))
    backend = json.loads(cli("apps", "register", "--name", "Nightly export", "--backend",
                             "--jwks-file", str(tmp_path / "pub.json"), "--scopes",
                             "system/*.rs", "--db", db_url).stdout)
    assert backend["backend"] is True and backend["token_endpoint_auth_method"] == \
        "private_key_jwt"
    private = json.loads(ECAlgorithm.to_jwk(key))
    (tmp_path / "priv.json").write_text(json.dumps({"keys": [private]}))
    leak = cli("apps", "register", "--name", "X", "--backend", "--jwks-file",
               str(tmp_path / "priv.json"), "--db", db_url, check=False)
    assert leak.returncode == 2 and "private key" in leak.stderr
    unknown = cli("apps", "register", "--name", "X", "--public", "--redirect-uri", "http://a/b",
                  "--scopes", "patient/Nope.rs", "--db", db_url, check=False)
    assert unknown.returncode == 2
