"""Fixtures of the SMART tests: `smart` (a live telefhir with authorization on, over both
backends) and `world` (two patients with data that could leak between them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from fhir_server.app import create_app
from fhir_server.config import Config
from fhir_server.store.base import ResourceStore
from tests.integration.smart_support import SmartServer, serve, smart_server_for


@pytest.fixture
def smart_app(store: ResourceStore, db_url: str) -> Flask:
    return create_app(Config(db_url=db_url, auth=True, auth_failure_rate=1000), store=store)


@pytest.fixture
def smart(smart_app: Flask) -> Iterator[SmartServer]:
    for base, root in serve(smart_app):
        yield smart_server_for(smart_app, base, root)


def _obs(oid: str, patient: str, category: str, code: str, **more: object) -> dict[str, object]:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"}, **more,
    }


@pytest.fixture
def world(smart: SmartServer) -> SmartServer:
    """Patients pa (Ann Alpha) and pb (Bob Beta), practitioner dr1, users `doc`
    (Practitioner/dr1), `ann` (Patient/pa) and `admin`; observations oa1 (vital signs), oa2
    (laboratory), oa3 (Ann's, with focus on Bob), ob1 and ob2 (Bob's, performed by dr1),
    encounters ea and eb."""
    s = smart
    s.seed({"resourceType": "Patient", "id": "pa", "birthDate": "1970-01-01",
            "name": [{"family": "Alpha", "given": ["Ann"]}]})
    s.seed({"resourceType": "Patient", "id": "pb", "birthDate": "1980-02-02",
            "name": [{"family": "Beta", "given": ["Bob"]}]})
    s.seed({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who"}]})
    s.seed({"resourceType": "Encounter", "id": "ea", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": "Patient/pa"}})
    s.seed({"resourceType": "Encounter", "id": "eb", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": "Patient/pb"}})
    s.seed(_obs("oa1", "pa", "vital-signs", "8867-4"))
    s.seed(_obs("oa2", "pa", "laboratory", "2345-7"))
    s.seed(_obs("oa3", "pa", "social-history", "72166-2", focus=[{"reference": "Patient/pb"}]))
    s.seed(_obs("ob1", "pb", "vital-signs", "B-ONLY", performer=[{"reference":
                                                                  "Practitioner/dr1"}]))
    s.seed(_obs("ob2", "pb", "laboratory", "2345-7"))
    s.add_user("doc", "Practitioner/dr1")
    s.add_user("ann", "Patient/pa")
    s.add_user("admin", "Practitioner/dr1", admin=True)
    return s
