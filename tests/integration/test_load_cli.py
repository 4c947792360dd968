"""`telefhir load`: the real console script against SQLite and PostgreSQL, with Synthea
transaction Bundles, an official collection Bundle, NDJSON and broken files."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fhir_server.app import open_store
from fhir_server.config import Config
from fhir_server.context import Context
from fhir_server.dispatcher import Dispatcher, render
from fhir_server.hooks import Hooks
from fhir_server.request import FhirRequest
from fhir_server.store.base import ResourceStore
from tests.conftest import SHARED_DATA

TELEFHIR = Path(sys.executable).parent / "telefhir"
SYNTHEA = SHARED_DATA / "synthea-r4-smart"
EXAMPLES = SHARED_DATA / "fhir-r4-examples"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"


def run_load(
    db_url: str, *files: Path | str, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `telefhir load` as a user would."""
    cmd = [str(TELEFHIR), "load", "--db", db_url, *map(str, files)]
    if quiet:
        cmd.append("--quiet")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


@contextmanager
def opened(db_url: str) -> Iterator[tuple[ResourceStore, Dispatcher]]:
    """The loaded database, as a store and an in-process dispatcher."""
    store = open_store(db_url)
    try:
        ctx = Context(store=store, config=Config(db_url=db_url), hooks=Hooks())
        yield store, Dispatcher(ctx, capabilities=lambda r: {})
    finally:
        store.close()


def search(dispatcher: Dispatcher, res_type: str, **params: str) -> list[dict[str, Any]]:
    """The resources a search finds (one page of up to 1000)."""
    req = FhirRequest("GET", res_type, query=[*params.items(), ("_count", "1000")])
    resp = dispatcher.handle(req)
    assert resp.status == 200, resp.resource
    bundle = json.loads(render(req, resp))  # the bytes a client would get
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]


def read(store: ResourceStore, res_type: str, res_id: str) -> dict[str, Any] | None:
    """The current body of Type/id, or None."""
    stored = store.read(res_type, res_id)
    if stored is None or stored.deleted or stored.body is None:
        return None
    body: dict[str, Any] = json.loads(stored.body)
    return body


def smallest_synthea(n: int) -> list[Path]:
    return sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size)[:n]


def synthea_patient(path: Path) -> tuple[str, int]:
    """The Synthea identifier of a bundle's patient and how many Observations it holds."""
    bundle = json.loads(path.read_text())
    patient = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    value = next(i["value"] for i in patient["identifier"] if i.get("system") == SYNTHEA_ID)
    n_obs = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    return value, n_obs


def test_synthea_transactions_load_with_progress_and_summary(db_url: str) -> None:
    files = smallest_synthea(3)
    total = sum(len(json.loads(f.read_text())["entry"]) for f in files)

    done = run_load(db_url, *files, quiet=False)

    assert done.returncode == 0, done.stderr
    assert f"{total}/{total}" in done.stderr  # the progress bar reached the end
    assert "files: 3 (0 with failures)" in done.stdout
    assert f"resources loaded: {total}" in done.stdout
    assert "failed: 0" in done.stdout
    assert "resources/s" in done.stdout
    with opened(db_url) as (_store, dispatcher):
        for f in files:
            ident, n_obs = synthea_patient(f)
            patients = search(dispatcher, "Patient", identifier=f"{SYNTHEA_ID}|{ident}")
            assert len(patients) == 1
            # urn:uuid references were rewritten to the ids the server assigned
            observations = search(dispatcher, "Observation",
                                  subject=f"Patient/{patients[0]['id']}")
            assert len(observations) == n_obs


def test_collection_bundle_gzipped_and_single_resource(db_url: str, tmp_path: Path) -> None:
    collection = json.loads((EXAMPLES / "Bundle-micro.json").read_text())
    assert collection["type"] == "collection"
    gz = tmp_path / "micro.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(collection).encode()))
    single = EXAMPLES / "Patient-example.json"

    done = run_load(db_url, gz, single)

    assert done.returncode == 0, done.stderr
    n = len(collection["entry"])
    assert f"resources loaded: {n + 1}" in done.stdout
    with opened(db_url) as (store, _dispatcher):
        for entry in collection["entry"]:
            original = entry["resource"]
            stored = read(store, original["resourceType"], original["id"])
            assert stored is not None, f"{original['resourceType']}/{original['id']} missing"
            assert stored.get("status") == original.get("status")
            assert stored.get("code") == original.get("code")
        patient = read(store, "Patient", "example")
        assert patient is not None
        assert patient["name"] == json.loads(single.read_text())["name"]


def _patient_line(i: int) -> dict[str, Any]:
    res = copy.deepcopy(_PATIENT)
    res["id"] = f"nd-{i}"
    res["name"] = [{"family": f"Loader{i}", "given": ["Nd"]}]
    return res


_PATIENT: dict[str, Any] = json.loads((EXAMPLES / "Patient-example.json").read_text())


def test_ndjson_in_chunks_reports_only_bad_lines(db_url: str, tmp_path: Path) -> None:
    lines = [json.dumps(_patient_line(i)) for i in range(1, 1101)]  # line i is Patient nd-i
    lines[2] = '{"resourceType": "Patient", "id": "nd-3", '  # line 3: not JSON
    bad = _patient_line(700)
    bad["gender"] = "robot"
    lines[699] = json.dumps(bad)  # line 700: not in the required value set (second chunk)
    unknown = _patient_line(1050)
    unknown["colour"] = "blue"
    lines[1049] = json.dumps(unknown)  # line 1050: unknown element (third chunk)
    path = tmp_path / "patients.ndjson"
    path.write_text("\n".join(lines) + "\n\n")

    done = run_load(db_url, path)

    assert done.returncode == 1
    assert f"{path}:3: not valid JSON" in done.stderr
    assert f"{path}:700: HTTP 400: 'robot'" in done.stderr
    assert f"{path}:1050: HTTP 400: Unknown element 'colour'" in done.stderr
    reported = [ln for ln in done.stderr.splitlines() if ln.startswith(f"{path}:")]
    assert len(reported) == 3, done.stderr
    assert "resources loaded: 1097" in done.stdout
    assert "failed: 3" in done.stdout
    with opened(db_url) as (store, dispatcher):
        for i in (1, 2, 500, 699, 701, 1049, 1051, 1100):
            res = read(store, "Patient", f"nd-{i}")
            assert res is not None and res["name"][0]["family"] == f"Loader{i}"
        for i in (3, 700, 1050):
            assert read(store, "Patient", f"nd-{i}") is None
        assert len(search(dispatcher, "Patient", family="Loader701")) == 1


def test_bad_files_are_named_and_good_files_still_load(db_url: str, tmp_path: Path) -> None:
    good, spoiled = smallest_synthea(2)
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [')
    bundle = json.loads(spoiled.read_text())
    bundle["entry"][5]["resource"]["bogusElement"] = True
    bad_entry = tmp_path / "bad-entry.json"
    bad_entry.write_text(json.dumps(bundle))
    missing = tmp_path / "missing.json"

    done = run_load(db_url, malformed, bad_entry, good, missing)

    assert done.returncode == 1
    assert f"{malformed}: not valid JSON" in done.stderr
    assert f"{bad_entry}: entry 5: HTTP 400:" in done.stderr
    assert "bogusElement" in done.stderr
    assert f"{missing}: cannot read" in done.stderr
    assert f"{good}" not in done.stderr
    n_good = len(json.loads(good.read_text())["entry"])
    assert "files: 4 (3 with failures)" in done.stdout
    assert f"resources loaded: {n_good}" in done.stdout
    with opened(db_url) as (_store, dispatcher):
        good_ident, _ = synthea_patient(good)
        spoiled_ident, _ = synthea_patient(spoiled)
        assert len(search(dispatcher, "Patient", identifier=f"{SYNTHEA_ID}|{good_ident}")) == 1
        # the transaction with a bad entry was rolled back as a whole
        assert search(dispatcher, "Patient", identifier=f"{SYNTHEA_ID}|{spoiled_ident}") == []


def test_unsupported_db_url_is_a_usage_error() -> None:
    done = run_load("mysql://nowhere/db", EXAMPLES / "Patient-example.json")
    assert done.returncode == 2
    assert "Unsupported --db URL" in done.stderr
