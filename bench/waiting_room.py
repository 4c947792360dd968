"""Benchmark what one live waiting-room stream costs: each stream re-reads the clinician's
queue once per TELEFHIR_QUEUE_POLL (default 1 s), and that read is exactly
`GET /visit/queue?practitioner=...` (three FHIR searches and the heartbeat table). wrk drives
that read against `telefhir serve --no-auth` on a queue of 30 virtual visits today, 20 of them
checked in; the server's CPU time per read is the cost of one stream for one poll interval.
Figures in bench/README.md.

    .venv/bin/python bench/waiting_room.py --backend sqlite
    .venv/bin/python bench/waiting_room.py --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import CpuMeter, free_port, process_tree, server, wait_until_quiet  # noqa: E402
from run import WRK_DONE, database, per_request, run_wrk  # noqa: E402

VIRTUAL = [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment."
            "virtualService", "extension": [{"url": "channelType", "valueCoding": {
                "system": "https://telefhir.org/fhir/CodeSystem/virtual-service-channel",
                "code": "audio-video"}}]}]
FHIR = {"Content-Type": "application/fhir+json"}


def seed(base: str, visits: int, arrived: int) -> None:
    """dr1 (UTC) with `visits` virtual Appointments spread over the rest of today, `arrived`
    of them checked in."""
    http = requests.Session()
    http.put(f"{base}/Practitioner/dr1", json={"resourceType": "Practitioner", "id": "dr1"},
             headers=FHIR).raise_for_status()
    now = datetime.now(UTC)
    day_end = now.replace(hour=23, minute=59, second=0, microsecond=0)
    step = max(timedelta(seconds=1), (day_end - now) / (visits + 1))
    for i in range(visits):
        pid = f"p{i}"
        http.put(f"{base}/Patient/{pid}", headers=FHIR, json={
            "resourceType": "Patient", "id": pid, "name": [{"family": f"Patient{i}"}]}
        ).raise_for_status()
        start = now + step * (i + 1) - timedelta(minutes=30)
        http.put(f"{base}/Appointment/a{i}", headers=FHIR, json={
            "resourceType": "Appointment", "id": f"a{i}", "status": "booked",
            "extension": VIRTUAL, "start": start.isoformat(timespec="seconds"),
            "end": (now + timedelta(hours=1) + step * (i + 1)).isoformat(timespec="seconds"),
            "participant": [{"actor": {"reference": "Practitioner/dr1"}, "status": "accepted"},
                            {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}]}
        ).raise_for_status()
        if i < arrived:
            http.post(f"{base}/Appointment/a{i}/$check-in", headers=FHIR,
                      json={"resourceType": "Parameters"}).raise_for_status()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--visits", type=int, default=30)
    ap.add_argument("--arrived", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-waiting-"))
    with database(args.backend, work) as (db_url, db_pids):
        port = free_port()
        with server(db_url, port, 2, [], work / "server.log") as proc:
            base = f"http://127.0.0.1:{port}/fhir"
            seed(base, args.visits, args.arrived)
            url = f"http://127.0.0.1:{port}/visit/queue?practitioner=Practitioner/dr1"
            queue = requests.get(url, timeout=10).json()["queue"]
            assert len(queue) == args.visits, len(queue)
            assert sum(1 for i in queue if i["arrived"]) == args.arrived
            script = work / "queue.lua"
            script.write_text('request = function() return wrk.format("GET", '
                              f'{json.dumps(url[url.index("/visit"):])}) end\n' + WRK_DONE)
            others = wait_until_quiet(10, 120)
            meter = CpuMeter([proc.pid], db_pids)
            result = run_wrk(url, script, 1, args.connections, args.seconds)
            cpu = meter.split()
            per_request(result, cpu)
            assert process_tree(proc.pid)
    out: dict[str, Any] = {k: v for k, v in result.items() if k != "raw"}
    out.update(backend=args.backend, visits=args.visits, arrived=args.arrived, cpu=cpu,
               others_before_pct=others)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
