"""`telefhir load FILE...`: bulk-load Bundles, single resources and NDJSON through the
dispatcher, as a client would (https://hl7.org/fhir/R4/http.html#transaction,
https://hl7.org/fhir/R4/nd-json.html).

Transaction and batch Bundles are posted as they are. Collection (and searchset) Bundles and
single resources become a transaction of `PUT Type/id` (or `POST Type` without an id). NDJSON is
posted in transactions of NDJSON_CHUNK lines; a chunk that fails is retried line by line so only
the bad lines fail. Files may be gzipped (`.json.gz`, `.ndjson.gz`)."""

from __future__ import annotations

import gzip
import re
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from tqdm import tqdm

from fhir_server.config import Config
from fhir_server.context import Context
from fhir_server.dispatcher import Dispatcher
from fhir_server.hooks import Hooks
from fhir_server.negotiation import FHIR_JSON
from fhir_server.request import FhirRequest, FhirResponse
from resources import json_numbers

NDJSON_CHUNK = 500  # lines per transaction
MAX_EXCLUDED = 50  # bad entries dropped from one collection before the whole file is failed
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
JSON_SUFFIXES = (".json",)
UNPACKED_BUNDLES = ("collection", "searchset")  # loaded entry by entry
_ENTRY_REF = re.compile(r"Bundle\.entry\[(\d+)\]")
# "Bundle.entry[0].resource: " or "Bundle.entry[0] (PUT Patient/1): ", meaningless for one line
_ENTRY_PREFIX = re.compile(r"Bundle\.entry\[\d+\](?:\.resource)?(?: \([^)]*\))?: ")


@dataclass
class _Tally:
    """What happened to the files so far."""

    files: int = 0
    files_failed: int = 0
    loaded: int = 0
    failed: int = 0
    messages: list[str] = field(default_factory=list)


def _open(path: Path) -> gzip.GzipFile | IO[bytes]:
    """The file for reading bytes, decompressed if it ends in `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _base_name(path: Path) -> str:
    """The file name without a trailing `.gz`, to decide JSON or NDJSON."""
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def is_ndjson(path: Path) -> bool:
    """NDJSON by extension (`.ndjson`, `.jsonl`, optionally `.gz`)."""
    return _base_name(path).endswith(NDJSON_SUFFIXES)


def expand(paths: list[str]) -> list[Path]:
    """The files named, with directories replaced by their JSON and NDJSON files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                f for f in sorted(p.iterdir())
                if f.is_file() and _base_name(f).endswith(JSON_SUFFIXES + NDJSON_SUFFIXES)
            )
        else:
            out.append(p)
    return out


def diagnostics(resp: FhirResponse) -> str:
    """The OperationOutcome of a failed response as one line, led by the HTTP status."""
    res = resp.resource or {}
    if resp.raw is not None and resp.resource is None:
        try:
            res = json_numbers.loads(resp.raw)
        except orjson.JSONDecodeError:
            res = {}
    texts = []
    for issue in res.get("issue", []):
        if not isinstance(issue, dict):
            continue
        text = str(issue.get("diagnostics") or issue.get("code") or "")
        where = [str(x) for x in issue.get("expression", []) if str(x) not in text]
        texts.append(f"{text} (at {', '.join(where)})" if where else text)
    return f"HTTP {resp.status}: " + ("; ".join(t for t in texts if t) or "no details")


def unwrapped(message: str) -> str:
    """`message` without the Bundle.entry[i] prefixes of the wrapping transaction."""
    return _ENTRY_PREFIX.sub("", message)


def failed_entry(resp: FhirResponse) -> int | None:
    """The Bundle entry index an error names (in an expression or its diagnostics), if any."""
    for issue in (resp.resource or {}).get("issue", []):
        if not isinstance(issue, dict):
            continue
        for text in [*issue.get("expression", []), str(issue.get("diagnostics", ""))]:
            m = _ENTRY_REF.search(str(text))
            if m:
                return int(m.group(1))
    return None


def as_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    """A transaction entry storing `resource`: PUT Type/id when it has an id, else POST Type."""
    rtype = str(resource.get("resourceType", ""))
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        request = {"method": "PUT", "url": f"{rtype}/{rid}"}
    else:
        request = {"method": "POST", "url": rtype}
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle of `entries`."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def count_resources(path: Path) -> int:
    """How many resources a file holds (for the progress bar); 0 if it cannot be read."""
    try:
        with _open(path) as f:
            if is_ndjson(path):
                return sum(1 for line in f if line.strip())
            doc = json_numbers.loads(f.read())
    except (OSError, EOFError, zlib.error, orjson.JSONDecodeError):
        return 0
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        if doc.get("type") in ("transaction", "batch", *UNPACKED_BUNDLES):
            entries = doc.get("entry")
            return len(entries) if isinstance(entries, list) else 0
    return 1


class Loader:
    """Posts what the files hold to one dispatcher and tallies the outcome."""

    def __init__(self, dispatcher: Dispatcher, bar: tqdm[Any], base_url: str) -> None:
        self.dispatcher = dispatcher
        self.bar = bar
        self.base_url = base_url
        self.tally = _Tally()
        self._file_failed = False

    # -- plumbing ----------------------------------------------------------------------------

    def post(self, bundle: dict[str, Any]) -> FhirResponse:
        """POST a Bundle to the base URL, in-process."""
        req = FhirRequest(
            "POST", "", body=json_numbers.dumps(bundle),
            headers={"content-type": FHIR_JSON, "prefer": "return=minimal"},
            base_url=self.base_url,
        )
        return self.dispatcher.handle(req)

    def fail(self, where: str, message: str, count: int = 1) -> None:
        """Report a failure of `count` resources at `where` (file, file:line or file: entry)."""
        line = f"{where}: {message}"
        self._file_failed = True
        self.tally.failed += count
        self.tally.messages.append(line)
        tqdm.write(line, file=sys.stderr)
        self.bar.update(count)

    def ok(self, count: int) -> None:
        """Count `count` resources loaded."""
        self.tally.loaded += count
        self.bar.update(count)

    # -- files -------------------------------------------------------------------------------

    def load_file(self, path: Path) -> None:
        """Load one file; failures are reported, never raised."""
        self._file_failed = False
        self.tally.files += 1
        try:
            if is_ndjson(path):
                self._ndjson(path)
            else:
                self._json(path)
        except (OSError, EOFError, zlib.error) as exc:
            self.fail(str(path), f"cannot read: {exc}", 0)
        if self._file_failed:
            self.tally.files_failed += 1

    def _json(self, path: Path) -> None:
        with _open(path) as f:
            raw = f.read()
        try:
            doc = json_numbers.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.fail(str(path), f"not valid JSON: {exc}", 0)
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            self.fail(str(path), "not a FHIR resource (a JSON object with a resourceType)")
            return
        btype = doc.get("type") if doc["resourceType"] == "Bundle" else None
        if btype == "transaction":
            self._transaction(path, doc)
        elif btype == "batch":
            self._batch(path, doc)
        elif btype in UNPACKED_BUNDLES:
            self._collection(path, doc)
        else:
            resp = self.post(transaction([as_entry(doc)]))
            if resp.status == 200:
                self.ok(1)
            else:
                self.fail(str(path), unwrapped(diagnostics(resp)))

    def _transaction(self, path: Path, doc: dict[str, Any]) -> None:
        n = len(doc.get("entry") or []) if isinstance(doc.get("entry"), list) else 0
        resp = self.post(doc)
        if resp.status == 200:
            self.ok(n)
            return
        index = failed_entry(resp)
        where = f"{path}: entry {index}" if index is not None else str(path)
        self.fail(where, f"{diagnostics(resp)} (transaction rolled back: nothing from this "
                         "file was loaded)", n)

    def _batch(self, path: Path, doc: dict[str, Any]) -> None:
        n = len(doc.get("entry") or []) if isinstance(doc.get("entry"), list) else 0
        resp = self.post(doc)
        if resp.status != 200 or resp.resource is None:
            self.fail(str(path), diagnostics(resp), n)
            return
        for i, entry in enumerate(resp.resource.get("entry", [])):
            response = entry.get("response", {})
            status = str(response.get("status", ""))
            if status[:1] in ("2", "3"):
                self.ok(1)
                continue
            outcome = response.get("outcome")
            code = int(status.split()[0]) if status.split() and status.split()[0].isdigit() else 0
            self.fail(f"{path}: entry {i}", diagnostics(FhirResponse(code, resource=outcome)))

    def _collection(self, path: Path, doc: dict[str, Any]) -> None:
        """A collection as one transaction; an entry it names as bad is dropped and reported,
        and the rest is tried again (references between good entries still resolve)."""
        raw_entries = doc.get("entry")
        if not isinstance(raw_entries, list):
            self.fail(str(path), f"a {doc.get('type')} Bundle without entries", 0)
            return
        todo: list[tuple[int, dict[str, Any]]] = []
        for i, e in enumerate(raw_entries):
            res = e.get("resource") if isinstance(e, dict) else None
            if not isinstance(res, dict):
                self.fail(f"{path}: entry {i}", "the entry has no resource")
                continue
            full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
            todo.append((i, as_entry(res, full_url)))
        excluded = 0
        while todo:
            resp = self.post(transaction([e for _, e in todo]))
            if resp.status == 200:
                self.ok(len(todo))
                return
            at = failed_entry(resp)
            if at is None or at >= len(todo) or excluded >= MAX_EXCLUDED:
                self.fail(str(path), f"{diagnostics(resp)} (none of its {len(todo)} remaining "
                                     "entries were loaded)", len(todo))
                return
            original, _ = todo.pop(at)
            excluded += 1
            message = diagnostics(resp).replace(f"Bundle.entry[{at}]", f"Bundle.entry[{original}]")
            self.fail(f"{path}: entry {original}", message)

    def _ndjson(self, path: Path) -> None:
        chunk: list[tuple[int, dict[str, Any]]] = []
        for lineno, res in self._ndjson_lines(path):
            chunk.append((lineno, res))
            if len(chunk) >= NDJSON_CHUNK:
                self._ndjson_chunk(path, chunk)
                chunk = []
        if chunk:
            self._ndjson_chunk(path, chunk)

    def _ndjson_lines(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        """Parsed resources with their line numbers; bad lines are reported here."""
        with _open(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    res = json_numbers.loads(line)
                except orjson.JSONDecodeError as exc:
                    self.fail(f"{path}:{lineno}", f"not valid JSON: {exc}")
                    continue
                if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                    self.fail(f"{path}:{lineno}", "not a FHIR resource (no resourceType)")
                    continue
                yield lineno, res

    def _ndjson_chunk(self, path: Path, chunk: list[tuple[int, dict[str, Any]]]) -> None:
        resp = self.post(transaction([as_entry(r) for _, r in chunk]))
        if resp.status == 200:
            self.ok(len(chunk))
            return
        for lineno, res in chunk:
            one = self.post(transaction([as_entry(res)]))
            if one.status == 200:
                self.ok(1)
            else:
                self.fail(f"{path}:{lineno}", unwrapped(diagnostics(one)))


def load_files(db_url: str, files: list[str], progress: bool) -> int:
    """Load `files` into the store at `db_url`; print failures and a summary.
    Returns the exit status: 0 if everything loaded, 1 if anything failed, 2 if no store."""
    from fhir_server.app import open_store

    paths = expand(files)
    try:
        store = open_store(db_url)
    except ValueError:
        raise  # a malformed --db URL: the CLI reports it
    except Exception as exc:  # a store that cannot be opened: say why, no traceback
        print(f"telefhir load: cannot open {db_url}: {exc}", file=sys.stderr)
        return 2
    config = Config(db_url=db_url)
    ctx = Context(store=store, config=config, hooks=Hooks())
    dispatcher = Dispatcher(ctx, capabilities=lambda r: {})
    base_url = config.public_base_url or "http://localhost:8080/fhir"
    total = sum(count_resources(p) for p in paths)
    started = time.perf_counter()
    with tqdm(total=total, unit="res", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        loader = Loader(dispatcher, bar, base_url)
        for path in paths:
            bar.set_postfix_str(path.name, refresh=False)
            loader.load_file(path)
    elapsed = time.perf_counter() - started
    store.close()
    t = loader.tally
    rate = t.loaded / elapsed if elapsed > 0 else 0.0
    print(
        f"files: {t.files} ({t.files_failed} with failures)  resources loaded: {t.loaded}  "
        f"failed: {t.failed}  time: {elapsed:.1f} s  rate: {rate:.0f} resources/s"
    )
    return 1 if t.failed or t.files_failed else 0
