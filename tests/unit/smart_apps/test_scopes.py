"""SMART scope parsing, narrowing and the restrictions a principal gets (pure functions)."""

from __future__ import annotations

from fhir_server.principal import Principal
from smart_apps.policy import permits, restriction
from smart_apps.scopes import describe, narrow, parse_scope


def test_parse_v2_v1_and_granular() -> None:
    s = parse_scope("patient/Observation.rs")
    assert s and s.context == "patient" and s.res_type == "Observation" and s.perms == {"r", "s"}
    assert parse_scope("user/*.cruds").perms == set("cruds")  # type: ignore[union-attr]
    v1 = parse_scope("patient/*.read")
    assert v1 and v1.v1 and v1.perms == {"r", "s"}
    assert parse_scope("user/Observation.write").perms == set("cud")  # type: ignore[union-attr]
    assert parse_scope("system/*.*").perms == set("cruds")  # type: ignore[union-attr]
    g = parse_scope("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
                    "observation-category|vital-signs")
    assert g and g.query == (("category", "http://terminology.hl7.org/CodeSystem/"
                                          "observation-category|vital-signs"),)
    for bad in ("patient/Observation.sr", "patient/Nope.rs", "patient/Observation.",
                "doctor/*.rs", "patient/*.read?category=x", "openid", "launch/patient"):
        assert parse_scope(bad) is None, bad


def test_narrow_to_what_the_app_may_have() -> None:
    asked = ["launch", "openid", "patient/Observation.rs", "user/*.cruds", "bogus"]
    assert narrow(asked, None) == ["launch", "openid", "patient/Observation.rs", "user/*.cruds"]
    assert narrow(asked, ["openid", "patient/*.rs"]) == ["launch", "openid",
                                                         "patient/Observation.rs"]
    granular = "patient/Observation.rs?category=vital-signs"
    assert narrow(["patient/Observation.rs"], [granular]) == []
    assert narrow([granular], [granular]) == [granular]


def test_describe_in_plain_words() -> None:
    assert describe("patient/Observation.rs") == \
        "Read and search Observation records of the selected patient"
    assert describe("user/*.cruds").startswith("Create, read, update, delete and search")
    assert "Unknown" in describe("nope")


def test_restrictions() -> None:
    patient = Principal(kind="user", scopes=("patient/*.rs",), patient="p1",
                        fhir_user="Practitioner/d")
    r = restriction(patient, "r")
    assert r is not None
    assert r.whole_type("Medication") and not r.whole_type("Observation")
    assert r.allows_type("Observation")
    assert restriction(patient, "c") is not None and not restriction(patient, "c").grants  # type: ignore[union-attr]
    assert permits(patient, "r", "Observation") and not permits(patient, "c", "Observation")
    no_patient = Principal(kind="user", scopes=("patient/*.rs",))
    assert not permits(no_patient, "r", "Observation")
    practitioner = Principal(kind="user", scopes=("user/*.rs",), fhir_user="Practitioner/d")
    assert restriction(practitioner, "r") is None  # everything
    patient_user = Principal(kind="user", scopes=("user/*.rs",), fhir_user="Patient/p9")
    pr = restriction(patient_user, "r")
    assert pr is not None and pr.grants[0].compartment == ("Patient", "p9")
    system = Principal(kind="client", scopes=("system/Observation.rs",))
    sr = restriction(system, "s")
    assert sr is not None and sr.whole_type("Observation") and not sr.allows_type("Patient")
