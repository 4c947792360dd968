"""The configuration file's identifier systems and time zone, as the mapping applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hl7v2_gateway.er7 import Message
from hl7v2_gateway.mapping import map_message
from hl7v2_gateway.settings import GatewaySettings, load_settings

MSG = ("MSH|^~\\&|APP|FAC^1.2.3^ISO|||20240102030405||ADT^A08|C1|P|2.5.1\r"
       "EVN|A08|20240102030405\r"
       "PID|1||{pid3}||Doe^Jane||19800101|F\r"
       "PV1|1|I|W1^101^A||||||||||||||||V77^^^FAC^VN|||||||||||||||||||||||||20240101080000\r")


def patient_ident(settings: GatewaySettings, pid3: str) -> dict[str, object]:
    plan = map_message(Message.parse(MSG.format(pid3=pid3)), settings)
    pat = next(p for p in plan.items.values() if p.res_type == "Patient")
    assert pat.ident is not None
    return pat.ident


@pytest.mark.parametrize(("pid3", "system"), [
    ("123^^^HOSP&2.16.840.1.113883.19.5&ISO^MR", "urn:oid:2.16.840.1.113883.19.5"),
    ("123^^^&2.16.840.1.113883.19.5&ISO^MR", "urn:oid:2.16.840.1.113883.19.5"),
    ("123^^^X&0f6c1a2e-7a4b-4f3e-9d8c-1b2a3c4d5e6f&UUID^MR",
     "urn:uuid:0f6c1a2e-7a4b-4f3e-9d8c-1b2a3c4d5e6f"),
    ("123^^^X&http://h.example/mrn&URI^MR", "http://h.example/mrn"),
    ("123^^^GOOD HEALTH^MR", "https://telefhir.org/fhir/sid/hl7v2/GOOD%20HEALTH"),
    ("123^^^^MR", "https://telefhir.org/fhir/sid/hl7v2/FAC"),  # no authority: MSH-4's
])
def test_identifier_system_defaults(pid3: str, system: str) -> None:
    assert patient_ident(GatewaySettings(), pid3)["system"] == system


def test_configured_systems_win(tmp_path: Path) -> None:
    cfg = tmp_path / "hl7.toml"
    cfg.write_text('timezone = "+0200"\n[identifier_systems]\n'
                   '"GOOD HEALTH" = "http://goodhealth.example.org/mrn"\n'
                   '"2.16.840.1.113883.19.5" = "http://hospital.example.org/mrn"\n')
    s = load_settings(cfg)
    assert patient_ident(s, "1^^^GOOD HEALTH^MR")["system"] == "http://goodhealth.example.org/mrn"
    assert patient_ident(s, "1^^^H&2.16.840.1.113883.19.5&ISO^MR")["system"] == \
        "http://hospital.example.org/mrn"
    plan = map_message(Message.parse(MSG.format(pid3="1^^^H^MR")), s)
    enc = next(p for p in plan.items.values() if p.res_type == "Encounter")
    assert enc.body["period"]["start"] == "2024-01-01T08:00:00+02:00"  # the configured zone


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "hl7.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_settings(cfg)
    cfg.write_text("timezone = 'Mars/Olympus'\n")
    with pytest.raises(ValueError, match="Mars"):
        load_settings(cfg)
