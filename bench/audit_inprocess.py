"""What the audit trail costs a read, in process: no HTTP, no sockets, no other process.

N threads read one Patient by id through the dispatcher of a SQLite store for a few seconds,
once with the audit trail off and once on (each read's AuditEvent durable before the answer),
as a `system/*.rs` bearer token's principal. Prints reads/s and process CPU per read of each,
and the CPU the audit trail adds per read. With `--profile FILE` the audited run is recorded
by pyinstrument (html).

    .venv/bin/python bench/audit_inprocess.py --threads 8 --seconds 5
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# the repository root, not bench/ (whose operations.py would hide the operations package)
sys.path[0] = str(Path(__file__).resolve().parents[1])

from fhir_server.app import build_context, build_dispatcher  # noqa: E402
from fhir_server.config import Config  # noqa: E402
from fhir_server.principal import Principal, internal  # noqa: E402
from fhir_server.request import FhirRequest  # noqa: E402
from fhir_server.store.sqlite import SqliteStore  # noqa: E402
from resources import json_numbers  # noqa: E402

PRINCIPAL = Principal(kind="client", client_id="bench", username=None, fhir_user=None,
                      scopes=("system/*.rs",), patient=None, encounter=None, admin=False,
                      token_id="bench-token")


def run(db: Path, audit: bool, threads: int, seconds: float, profile: str | None) -> dict[str, Any]:
    store = SqliteStore(db)
    ctx = build_context(Config(db_url=f"sqlite:///{db}", audit=audit), store)
    dispatch = build_dispatcher(ctx)
    body = json_numbers.dumps({"resourceType": "Patient", "name": [{"family": "Bench"}]})
    created = dispatch.handle(FhirRequest("POST", "Patient", body=body, principal=internal("bench"),
                                          headers={"content-type": "application/fhir+json"}))
    assert created.status == 201, created.resource
    pid = created.headers["Location"].split("/")[-3]
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def reader(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            resp = dispatch.handle(FhirRequest("GET", f"Patient/{pid}", principal=PRINCIPAL,
                                               remote_addr="127.0.0.1"))
            assert resp.status == 200, resp.status
            n += 1
        counts[i] = n

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    workers = [threading.Thread(target=reader, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    ru, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
    user, system = ru.ru_utime - ru0.ru_utime, ru.ru_stime - ru0.ru_stime
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_html())
    store.close()
    reads = sum(counts)
    return {"audit": audit, "reads": reads, "reads_per_s": reads / wall,
            "cpu_us_per_read": (user + system) / reads * 1e6,
            "system_us_per_read": system / reads * 1e6,
            "context_switches_per_read": (ru.ru_nvcsw + ru.ru_nivcsw - ru0.ru_nvcsw
                                          - ru0.ru_nivcsw) / reads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--profile", help="pyinstrument html of the audited run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        off = run(Path(tmp, "off.db"), False, args.threads, args.seconds, None)
        on = run(Path(tmp, "on.db"), True, args.threads, args.seconds, args.profile)
    for r in (off, on):
        print(f"audit {'on ' if r['audit'] else 'off'}: {r['reads_per_s']:8.0f} reads/s "
              f"{r['cpu_us_per_read']:7.0f} us CPU/read "
              f"({r['system_us_per_read']:.0f} in the kernel), "
              f"{r['context_switches_per_read']:.1f} context switches/read ({r['reads']} reads)")
    print(f"audit adds {on['cpu_us_per_read'] - off['cpu_us_per_read']:.0f} us CPU per read; "
          f"audited reads/s = {on['reads_per_s'] / off['reads_per_s']:.0%} of unaudited")


if __name__ == "__main__":
    main()
