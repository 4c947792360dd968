"""Rendering a visit's instants in the practitioner's and the patient's time zones, across
zones and daylight-saving changes (operations.visits.timezones), and the queue's order."""

from __future__ import annotations

from datetime import UTC, date, datetime

from operations.visits.queue import queue_items
from operations.visits.timezones import TIMEZONE_EXT, day_bounds, local, today, zone, zone_of


def _person(res_type: str, pid: str, tz: str | None) -> dict[str, object]:
    out: dict[str, object] = {"resourceType": res_type, "id": pid}
    if tz:
        out["extension"] = [{"url": TIMEZONE_EXT, "valueCode": tz}]
    return out


def test_one_instant_reads_differently_in_new_york_and_kolkata() -> None:
    ny, kol = zone("America/New_York"), zone("Asia/Kolkata")
    assert ny and kol
    instant = "2026-01-15T14:00:00Z"
    assert local(instant, ny) == {"zone": "America/New_York", "iso": "2026-01-15T09:00:00-05:00",
                                  "date": "2026-01-15", "time": "09:00", "abbr": "EST"}
    assert local(instant, kol) == {"zone": "Asia/Kolkata", "iso": "2026-01-15T19:30:00+05:30",
                                   "date": "2026-01-15", "time": "19:30", "abbr": "IST"}
    # late evening in New York is the next morning in Kolkata
    late = local("2026-01-16T03:30:00+00:00", ny), local("2026-01-16T03:30:00+00:00", kol)
    assert (late[0] or {})["date"] == "2026-01-15" and (late[1] or {})["date"] == "2026-01-16"


def test_daylight_saving_change_in_new_york() -> None:
    ny = zone("America/New_York")
    assert ny
    # 2026-03-08: clocks go from 02:00 EST to 03:00 EDT; the local day is 23 hours long
    assert day_bounds(date(2026, 3, 8), ny) == ("2026-03-08T05:00:00+00:00",
                                                "2026-03-09T04:00:00+00:00")
    assert (local("2026-03-08T06:59:00Z", ny) or {})["iso"] == "2026-03-08T01:59:00-05:00"
    assert (local("2026-03-08T07:00:00Z", ny) or {})["iso"] == "2026-03-08T03:00:00-04:00"
    assert (local("2026-03-08T07:00:00Z", ny) or {})["abbr"] == "EDT"
    # 2026-11-01: back to EST; 25 hours
    assert day_bounds(date(2026, 11, 1), ny) == ("2026-11-01T04:00:00+00:00",
                                                 "2026-11-02T05:00:00+00:00")
    # Kolkata keeps no daylight saving: the same day is 24 hours
    kol = zone("Asia/Kolkata")
    assert kol and day_bounds(date(2026, 3, 8), kol) == ("2026-03-07T18:30:00+00:00",
                                                          "2026-03-08T18:30:00+00:00")


def test_today_is_the_zones_today() -> None:
    ny, kol = zone("America/New_York"), zone("Asia/Kolkata")
    assert ny and kol
    now = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)  # 23:30 on the 7th in New York
    assert today(ny, now) == date(2026, 3, 7)
    assert today(kol, now) == date(2026, 3, 8)


def test_zone_of_reads_the_extension_and_falls_back() -> None:
    assert zone_of(_person("Practitioner", "1", "Asia/Kolkata")).key == "Asia/Kolkata"
    assert zone_of(_person("Patient", "1", "Not/AZone")).key == "UTC"
    assert zone_of(None).key == "UTC"


def _appt(aid: str, start: str, patient: str) -> dict[str, object]:
    return {"resourceType": "Appointment", "id": aid, "status": "booked", "start": start,
            "participant": [{"actor": {"reference": f"Patient/{patient}"}}]}


def _enc(eid: str, aid: str, arrived: str, status: str = "arrived") -> dict[str, object]:
    return {"resourceType": "Encounter", "id": eid, "status": status,
            "appointment": [{"reference": f"Appointment/{aid}"}],
            "statusHistory": [{"status": "arrived", "period": {"start": arrived}}]}


def test_queue_order_times_and_presence() -> None:
    ny = zone("America/New_York")
    assert ny
    now = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    appts = [_appt("late", "2026-03-08T16:00:00Z", "p3"),
             _appt("b", "2026-03-08T10:00:00-05:00", "p2"),  # 15:00Z, same as `a`
             _appt("a", "2026-03-08T15:00:00+00:00", "p1"),
             {**_appt("gone", "2026-03-08T14:00:00Z", "p4"), "status": "cancelled"}]
    encs = [_enc("eb", "b", "2026-03-08T14:50:00Z"), _enc("ea", "a", "2026-03-08T14:55:00Z")]
    patients = {"Patient/p1": {**_person("Patient", "p1", "Asia/Kolkata"),
                               "name": [{"given": ["Ann"], "family": "Alpha"}]}}
    seen = {"a": int(now.timestamp() * 1e6) - 5_000_000,  # 5 s ago
            "b": int(now.timestamp() * 1e6) - 60_000_000}  # a minute ago: gone
    items = queue_items(appts, encs, patients, seen, ny, now, gone_after_s=30)
    # same appointment time: arrival order (b arrived first); then the later one
    assert [i["appointment"] for i in items] == ["Appointment/b", "Appointment/a",
                                                 "Appointment/late"]
    b, a, late = items
    assert b["waitedSeconds"] == 600 and a["waitedSeconds"] == 300
    assert late["waitedSeconds"] is None and late["arrived"] is None
    assert a["present"] is True and b["present"] is False and late["present"] is False
    assert a["startLocal"]["time"] == "11:00" and a["startLocal"]["abbr"] == "EDT"  # after DST
    assert a["patient"]["display"] == "Ann Alpha"
    assert a["patient"]["startLocal"]["time"] == "20:30"  # Kolkata, +05:30
    assert a["arrivedLocal"]["iso"] == "2026-03-08T10:55:00-04:00"
