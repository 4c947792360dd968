"""Fill a fees table's RVUs from the CMS National Physician Fee Schedule Relative Value File
(PPRRVU<year>_*.csv inside RVU<yy>x.zip,
https://www.cms.gov/medicare/payment/fee-schedules/physician/pfs-relative-value-files).

    python -m operations.billing.import_rvus PPRRVU2026_Jan_nonQPP.csv \\
        --into operations/billing/data/medicare-part-b-fees-2026.json [--codes 99215,90834]

Updates the work, non-facility PE, facility PE and MP RVUs of the codes already in the table
(or of `--codes`), records the file each value came from, and takes the conversion factor from
the file's CONV FACTOR column. Rows with a modifier (26, TC, 53) are skipped: the global row is
the professional telehealth price. The layout is positional (HCPCS, MOD, DESCRIPTION, STATUS,
_, WORK, NON-FAC PE, NA, FACILITY PE, NA, MP, ...), which has held from 2013 to 2026; an "NA"
facility or non-facility indicator leaves that RVU empty."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_rvus(path: Path) -> tuple[dict[str, dict[str, float | None]], float | None]:
    """(RVUs by HCPCS code of the rows without modifier, the conversion factor)."""
    rows: dict[str, dict[str, float | None]] = {}
    factor: float | None = None
    with path.open(newline="", encoding="latin-1") as fh:
        for row in csv.reader(fh):
            if len(row) < 11 or row[1].strip() or _number(row[5]) is None:
                continue  # header lines, copyright lines, modifier rows
            code = row[0].strip().upper()
            rows[code] = {
                "work": _number(row[5]),
                "peNonFacility": None if row[7].strip() == "NA" else _number(row[6]),
                "peFacility": None if row[9].strip() == "NA" else _number(row[8]),
                "mp": _number(row[10]),
            }
            for cell in row[20:]:
                value = _number(cell)
                if value is not None and 20 < value < 60 and "." in cell and \
                        len(cell.split(".")[1]) == 4:
                    factor = value
                    break
    return rows, factor


def merge(table: dict[str, Any], rvus: dict[str, dict[str, float | None]],
          factor: float | None, source_name: str, codes: list[str]) -> list[str]:
    """Update `table` in place; the codes updated."""
    wanted = codes or list((table.get("rvu") or {}).keys())
    done = []
    for code in wanted:
        if code not in rvus:
            continue
        entry = dict(rvus[code])
        old = (table.get("rvu") or {}).get(code) or {}
        table.setdefault("rvu", {})[code] = {
            **entry, "source": old.get("source", "rvu26"),
            "verified": f"imported from the CMS relative value file {source_name}"}
        done.append(code)
    if factor is not None:
        table["conversionFactor"] = {
            "value": factor, "source": (table.get("conversionFactor") or {}).get("source"),
            "verified": f"CONV FACTOR column of {source_name}"}
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m operations.billing.import_rvus",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("rvu_file", type=Path)
    ap.add_argument("--into", type=Path, required=True, help="the fees table to update")
    ap.add_argument("--codes", default="", help="comma-separated codes (default: the table's)")
    args = ap.parse_args(argv)
    try:
        table = json.loads(args.into.read_text(encoding="utf-8"))
        rvus, factor = read_rvus(args.rvu_file)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if table.get("kind") != "fees":
        print(f"error: {args.into} is not a fees table", file=sys.stderr)
        return 2
    codes = [c.strip().upper() for c in args.codes.split(",") if c.strip()]
    done = merge(table, rvus, factor, args.rvu_file.name, codes)
    missing = sorted(set(codes or table.get("rvu", {}).keys()) - set(done))
    args.into.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"updated {len(done)} codes" + (f"; not in the file: {', '.join(missing)}"
                                          if missing else ""))
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())
