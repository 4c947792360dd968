"""What a mapped message asks for: resources keyed by business identifier, with the elements the
message sets and the elements it clears.

A mapping module fills a Plan; `apply` turns it into one FHIR transaction against the current
data (conditional create, merge-update on identifier). References between planned resources are
written `{"reference": "@key"}` and resolved when the transaction is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hl7v2_gateway.errors import Hl7Error


@dataclass
class Planned:
    """One resource the message describes.

    `ident` is the identifier it is matched on (conditional create/update); `body` holds the
    elements the message carries (they replace the stored ones; `identifier` is merged); `clear`
    names elements the message deleted with `""`; `update` False only ensures the resource
    exists (a reference target the message names but does not describe)."""

    key: str
    res_type: str
    body: dict[str, Any]
    ident: dict[str, Any] | None
    clear: set[str] = field(default_factory=set)
    update: bool = True


@dataclass
class Repoint:
    """After a merge: every `res_type` whose `param` points at `source` points at `target`
    (A40: the Encounters of the merged Patient)."""

    res_type: str
    param: str
    element: str
    source: str  # plan key
    target: str  # plan key


@dataclass
class Plan:
    """The resources of one message, in the order they were planned."""

    message_time_us: int | None = None
    items: dict[str, Planned] = field(default_factory=dict)
    repoints: list[Repoint] = field(default_factory=list)
    warnings: list[Hl7Error] = field(default_factory=list)

    def add(self, key: str, res_type: str, body: dict[str, Any],
            ident: dict[str, Any] | None, clear: set[str] | None = None,
            update: bool = True) -> str:
        """Plan a resource (a second plan of the same key adds its elements); its key."""
        body = {"resourceType": res_type, **{k: v for k, v in body.items()
                                              if k != "resourceType"}}
        have = self.items.get(key)
        if have is not None:
            for k, v in body.items():
                have.body.setdefault(k, v)
            have.clear |= clear or set()
            have.update = have.update or update
            return key
        self.items[key] = Planned(key, res_type, body, ident, set(clear or ()), update)
        return key

    @staticmethod
    def ref(key: str, display: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": f"@{key}"}
        if display:
            out["display"] = display
        return out

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON (kept in the inbox row, so that applying it later needs no second
        parse of the message)."""
        return {"time": self.message_time_us,
                "items": [[p.key, p.res_type, p.body, p.ident, sorted(p.clear), p.update]
                          for p in self.items.values()],
                "repoints": [[r.res_type, r.param, r.element, r.source, r.target]
                             for r in self.repoints]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        plan = cls(message_time_us=data.get("time"))
        for key, res_type, body, ident, clear, update in data["items"]:
            plan.items[key] = Planned(key, res_type, body, ident, set(clear), update)
        plan.repoints = [Repoint(*r) for r in data.get("repoints", [])]
        return plan

    def resources(self) -> list[dict[str, Any]]:
        """The planned bodies, references left as written (for $convert previews)."""
        return [p.body for p in self.items.values()]


def identifier_key(res_type: str, ident: dict[str, Any]) -> str:
    """The plan key of a resource matched on `ident`."""
    return f"{res_type}|{ident.get('system', '')}|{ident['value']}"
