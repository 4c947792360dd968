"""Our mapping beside Microsoft FHIR-Converter's expected output for the same samples (one
converter's reading, not normative, SOURCES.md says; the fields compared are ones both read the
same way from the message): the Patient's birth date, gender, names and PID-3 identifiers, and
each numeric Observation's code and value."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from hl7v2_gateway.er7 import Message
from hl7v2_gateway.mapping import map_message, supported
from hl7v2_gateway.settings import GatewaySettings
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "fhir-converter-hl7v2"


def cases() -> list[tuple[str, Path]]:
    mapped = set(supported())
    out = []
    for expected in sorted((DATA / "expected-fhir").glob("*/*-expected.json.gz")):
        name = expected.name[: -len("-expected.json.gz")]
        msg = DATA / "messages" / f"{name}.hl7"
        if not msg.exists():
            continue
        head = msg.read_text(encoding="utf-8-sig").split("\n", 1)[0].split("|")
        mtype = head[8].split("^")
        if (mtype[0], mtype[1] if len(mtype) > 1 else "") in mapped:
            out.append((name, expected))
    return out


def ours(name: str) -> list[dict[str, Any]]:
    text = (DATA / "messages" / f"{name}.hl7").read_text(encoding="utf-8-sig")
    plan = map_message(Message.parse(text.replace("\n", "\r")), GatewaySettings())
    return plan.resources()


def of_type(resources: list[dict[str, Any]], t: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == t]


@pytest.mark.parametrize(("name", "expected"), cases(), ids=[c[0] for c in cases()])
def test_patient_and_observations_agree(name: str, expected: Path) -> None:
    theirs = [e["resource"] for e in json.load(gzip.open(expected))["entry"]]
    mine = ours(name)
    if not of_type(theirs, "Patient"):  # A40: FHIR-Converter writes a Linkage instead
        return
    their_pat, my_pat = of_type(theirs, "Patient")[0], of_type(mine, "Patient")[0]
    assert my_pat.get("birthDate") == their_pat.get("birthDate")
    assert my_pat.get("gender") == their_pat.get("gender")
    their_families = {n.get("family") for n in their_pat.get("name", [])}
    assert {n.get("family") for n in my_pat.get("name", [])} <= their_families
    their_ids = {i.get("value") for i in their_pat.get("identifier", [])}
    assert my_pat["identifier"][0]["value"] in their_ids

    def numeric(obs: list[dict[str, Any]]) -> set[tuple[str, float, str | None]]:
        out = set()
        for o in obs:
            q = o.get("valueQuantity")
            code = next((c.get("code") for c in o["code"].get("coding", [])), None)
            if q and code and "value" in q:
                out.add((code, float(q["value"]), q.get("code") or q.get("unit")))
        return out

    mine_obs, their_obs = numeric(of_type(mine, "Observation")), numeric(
        of_type(theirs, "Observation"))
    # every numeric result they read, we read the same (we also map OBX under SPM, which
    # FHIR-Converter leaves out of ORU-R01-01)
    assert {(c, v) for c, v, _ in their_obs} <= {(c, v) for c, v, _ in mine_obs}
