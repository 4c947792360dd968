"""Encounter.statusHistory kept by the server, so waits can be measured
(https://hl7.org/fhir/R4/encounter-definitions.html#Encounter.statusHistory).

When an update changes an Encounter's status, the server closes the open statusHistory entry
(or, the first time, adds one for the old status since the first version that had it) and
opens one for the new status: the current status is last, with an open period. The server's
list is authoritative: a client that sends its own entries, or none, gets the stored list
continued. A create is not a change: the Encounter is stored as sent."""

from __future__ import annotations

from typing import Any

from fhir_server.context import Context
from fhir_server.store.base import HistoryQuery, StoreTx
from fhir_server.timeutil import now_us, to_instant
from resources import json_numbers


def _entry(status: Any, at: str) -> dict[str, Any]:
    return {"status": status, "period": {"start": at}}


def on_update(ctx: Context, tx: StoreTx, res_type: str, res_id: str,
              resource: dict[str, Any]) -> None:
    if res_type != "Encounter":
        return
    current = tx.read(res_type, res_id)
    if current is None or current.deleted or current.body is None:
        return
    old = json_numbers.loads(current.body)
    history = [dict(h) for h in old.get("statusHistory") or [] if isinstance(h, dict)]
    if old.get("status") == resource.get("status"):
        if history:
            resource["statusHistory"] = history
        return
    now = to_instant(now_us())
    if history and not (history[-1].get("period") or {}).get("end"):
        history[-1]["period"] = {**history[-1].get("period", {}), "end": now}
    elif not history:
        since = _status_since(tx, res_type, res_id, old.get("status")) or now
        history.append({"status": old.get("status"), "period": {"start": since, "end": now}})
    history.append(_entry(resource.get("status"), now))
    resource["statusHistory"] = history


def _status_since(tx: StoreTx, res_type: str, res_id: str, status: Any) -> str | None:
    """When the current status began: lastUpdated of the oldest version of the unbroken run
    of versions that have it."""
    versions, _ = tx.history(HistoryQuery(res_type=res_type, res_id=res_id, count=1000))
    since = None
    for v in versions:  # newest first
        if v.deleted or v.body is None:
            break
        body = json_numbers.loads(v.body)
        if body.get("status") != status:
            break
        since = (body.get("meta") or {}).get("lastUpdated")
    return since


def install(ctx: Context) -> None:
    """Plugin entry point."""
    ctx.hooks.register("before_update", on_update)
