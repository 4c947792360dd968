"""Which intake form a visit type requires before check-in (TELEFHIR_INTAKE_QUESTIONNAIRES)."""

from __future__ import annotations

import pytest

from operations.visits.check_in import required_intake, same_canonical
from operations.visits.settings import VisitSettings

NEW = {"appointmentType": {"coding": [{"system": "http://x.org/vt", "code": "NEW"}]}}
FOLLOW = {"serviceType": [{"coding": [{"system": "http://x.org/vt", "code": "FU"}]}]}


def test_settings_parse_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEFHIR_INTAKE_QUESTIONNAIRES",
                       " http://x.org/vt|NEW = https://q.org/Questionnaire/new|2 ,"
                       "*=https://q.org/Questionnaire/general, broken, =nothing")
    cfg = VisitSettings.from_env()
    assert cfg.intake == (("http://x.org/vt|NEW", "https://q.org/Questionnaire/new|2"),
                          ("*", "https://q.org/Questionnaire/general"))
    assert required_intake(NEW, cfg) == "https://q.org/Questionnaire/new|2"
    assert required_intake(FOLLOW, cfg) == "https://q.org/Questionnaire/general"
    only = VisitSettings(intake=(("http://x.org/vt|NEW", "https://q.org/Q/new"),))
    assert required_intake(FOLLOW, only) is None
    assert required_intake(NEW, VisitSettings()) is None


def test_canonical_versions() -> None:
    assert same_canonical("https://q.org/Q/new|2.1", "https://q.org/Q/new")
    assert same_canonical("https://q.org/Q/new", "https://q.org/Q/new")
    assert not same_canonical("https://q.org/Q/new|2.1", "https://q.org/Q/new|2")
    assert same_canonical("https://q.org/Q/new|2", "https://q.org/Q/new|2")
    assert not same_canonical("https://q.org/Q/newer", "https://q.org/Q/new")
