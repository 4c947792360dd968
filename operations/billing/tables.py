"""Payer fee and rule tables: data files per payer and period, never literals in code.

Three kinds of JSON file live in `operations/billing/data/` and in the folders named by
`Config.billing_tables` (TELEFHIR_BILLING_TABLES), read in that order so that a later file
with the same kind, payer and start date replaces a shipped one:

- `rules`: what a payer covers and how a telehealth claim is coded, for an effective period
  (place of service, modifiers, E/M time thresholds, originating sites, denials with CARCs);
  the date of service picks the period.
- `fees`: one payer's amounts for one calendar year (conversion factor, RVUs, fixed amounts
  such as the originating site fee, deductible, coinsurance).
- `sources`: the sources every table cites by id; `channels`: virtualService channel types to
  billing modality.

A new payer is a new pair of files: no code changes. The shipped Medicare tables cite the CY 2026
Physician Fee Schedule final rule, the Medicare Benefit Policy Manual ch. 15 §270, the CMS POS
code set and CPT 2026 (https://www.cms.gov/medicare/payment/fee-schedules/physician)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
KINDS = ("rules", "fees", "sources", "channels")


class TableError(ValueError):
    """A billing table file that cannot be used (named in the message)."""


@dataclass(frozen=True)
class RuleTable:
    """One payer's coverage and coding rules for an effective period (end inclusive)."""

    payer: str
    start: date
    end: date | None
    data: dict[str, Any]
    path: str

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def matches(self, coverage: dict[str, Any], payer: dict[str, Any] | None) -> bool:
        """Whether a Coverage (and its payor Organization) belongs to this payer: by
        Coverage.type coding or by an identifier of the payor."""
        types = [(c.get("system"), c.get("code"))
                 for c in (coverage.get("type") or {}).get("coding", [])]
        idents = [(i.get("system"), i.get("value")) for i in (payer or {}).get("identifier", [])]
        for m in self.data.get("payerMatch", []):
            ct = m.get("coverageType")
            if ct and (ct.get("system"), ct.get("code")) in types:
                return True
            pi = m.get("payerIdentifier")
            if pi and any(v == pi.get("value") and (pi.get("system") in (None, s))
                          for s, v in idents):
                return True
        return False


@dataclass(frozen=True)
class FeeTable:
    """One payer's amounts for one calendar year."""

    payer: str
    year: int
    start: date
    end: date
    data: dict[str, Any]
    path: str

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end

    @property
    def currency(self) -> str:
        return str(self.data.get("currency", "USD"))

    def decimal(self, *keys: str) -> Decimal | None:
        """A number at `keys` (e.g. "deductible", "amount") as a Decimal, or None."""
        value: Any = self.data
        for k in keys:
            if not isinstance(value, dict) or value.get(k) is None:
                return None
            value = value[k]
        return Decimal(str(value))


@dataclass
class Tables:
    """Every table loaded, with the lookups the claim engine uses."""

    rules: list[RuleTable] = field(default_factory=list)
    fees: list[FeeTable] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, Any] = field(default_factory=dict)

    def rules_for(
        self, coverage: dict[str, Any], payer: dict[str, Any] | None, day: date
    ) -> tuple[list[RuleTable], RuleTable | None]:
        """(the payer's rule tables, the one in force on `day` or None)."""
        mine = [r for r in self.rules if r.matches(coverage, payer)]
        return mine, next((r for r in mine if r.covers(day)), None)

    def fees_for(self, payer: str, day: date) -> FeeTable | None:
        return next((f for f in self.fees if f.payer == payer and f.covers(day)), None)

    def modality_of_channel(self, system: str | None, code: str | None) -> str | None:
        for c in self.channels.get("channels", []):
            if c.get("code") == code and (system is None or c.get("system") == system):
                return str(c["modality"])
        return None


def _date(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise TableError(f"{where}: '{value}' is not a date (YYYY-MM-DD)") from exc


def _files(extra: tuple[str, ...]) -> list[Path]:
    out = sorted(DATA.glob("*.json"))
    for folder in extra:
        p = Path(folder)
        if not p.is_dir():
            raise TableError(f"billing tables folder {folder} does not exist")
        out.extend(sorted(p.glob("*.json")))
    return out


def _source_ids(data: dict[str, Any]) -> list[str]:
    """Every `source` id a table cites, anywhere in it."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "source" and isinstance(x, str):
                    found.append(x)
                elif k == "sources" and isinstance(x, list):
                    found.extend(s for s in x if isinstance(s, str))
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(data)
    return found


def parse_tables(files: list[Path]) -> Tables:
    """Read and check table files (later files replace earlier ones of the same key)."""
    rules: dict[tuple[str, date], RuleTable] = {}
    fees: dict[tuple[str, int], FeeTable] = {}
    t = Tables()
    for path in files:
        name = path.name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TableError(f"{name}: {exc}") from exc
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind not in KINDS:
            raise TableError(f"{name}: 'kind' must be one of {', '.join(KINDS)}")
        if kind == "sources":
            t.sources.update(data.get("sources") or {})
            continue
        if kind == "channels":
            t.channels = data
            continue
        payer = data.get("payer")
        eff = data.get("effective") or {}
        if not isinstance(payer, str) or "start" not in eff:
            raise TableError(f"{name}: a {kind} table needs 'payer' and 'effective.start'")
        start = _date(eff["start"], name)
        if kind == "rules":
            end = _date(eff["end"], name) if eff.get("end") else None
            for key in ("placeOfService", "modalities", "services", "denials",
                        "evaluationAndManagement"):
                if key not in data:
                    raise TableError(f"{name}: a rules table needs '{key}'")
            rules[(payer, start)] = RuleTable(payer, start, end, data, name)
        else:
            if "end" not in eff or not isinstance(data.get("year"), int):
                raise TableError(f"{name}: a fees table needs 'year' and 'effective.end'")
            fees[(payer, data["year"])] = FeeTable(payer, data["year"], start,
                                                   _date(eff["end"], name), data, name)
    t.rules = sorted(rules.values(), key=lambda r: (r.payer, r.start))
    t.fees = sorted(fees.values(), key=lambda f: (f.payer, f.start))
    tables: list[RuleTable | FeeTable] = [*t.rules, *t.fees]
    for table in tables:
        unknown = sorted(set(_source_ids(table.data)) - set(t.sources))
        if unknown:
            raise TableError(f"{table.path}: cites unknown sources {', '.join(unknown)}")
        for denial in (table.data.get("denials") or {}).values():
            if not str(denial.get("carc", "")).isalnum():
                raise TableError(f"{table.path}: every denial needs a CARC code")
    return t


@cache
def load_tables(extra: tuple[str, ...] = ()) -> Tables:
    """The shipped tables plus those in `extra` folders (cached per folder list)."""
    return parse_tables(_files(extra))
