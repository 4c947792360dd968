"""Two widely used Python FHIR clients, fhirpy and fhirclient (SMART on FHIR), driving the live
server on both backends: the REST interactions of https://hl7.org/fhir/R4/http.html as real
clients send them."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle as FcBundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation as FcObservation
from fhirclient.models.patient import Patient as FcPatient
from fhirclient.server import FHIRNotFoundException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

from tests.conftest import LiveServer

SYS = "http://example.org/fhir/ids"


# -- fhirpy ------------------------------------------------------------------------------------


def test_fhirpy_crud(server: LiveServer) -> None:
    """create (POST), read, update (PUT), conditional read (refresh sends If-None-Match),
    delete, and a read after delete reported as not found (https://hl7.org/fhir/R4/http.html)."""
    client = SyncFHIRClient(server.base)
    pat = client.resource("Patient", name=[{"family": "Fhirpy", "given": ["Ada"]}],
                          identifier=[{"system": SYS, "value": "fp-1"}])
    pat.save()
    assert pat.id and pat["meta"]["versionId"] == "1"
    got = client.reference("Patient", pat.id).to_resource()
    assert got["name"][0]["family"] == "Fhirpy"
    got["gender"] = "female"
    got.save()
    assert got["meta"]["versionId"] == "2"
    # refresh() sends If-None-Match with the bare versionId; the server answers 304
    got.refresh()
    assert got["meta"]["versionId"] == "2" and got["gender"] == "female"
    pat.refresh()  # stale copy: a full 200 answer replaces it
    assert pat["meta"]["versionId"] == "2"
    as_dict = client.get("Patient", pat.id)
    assert as_dict["gender"] == "female"
    pat.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone is reported like 404 by fhirpy
        client.reference("Patient", pat.id).to_resource()


def test_fhirpy_search_and_paging(server: LiveServer) -> None:
    """search with modifiers, fetch_all following next links, count, get/first.
    See https://hl7.org/fhir/R4/http.html#search."""
    client = SyncFHIRClient(server.base)
    for i in range(12):
        client.resource("Patient", name=[{"family": "Pager", "given": [f"G{i}"]}],
                        gender="male" if i % 2 else "female",
                        birthDate=f"19{70 + i}-01-01").save()
    client.resource("Patient", name=[{"family": "Other"}]).save()
    everyone = client.resources("Patient").search(family="Pager").limit(5).fetch_all()
    assert len(everyone) == 12
    assert len({p.id for p in everyone}) == 12
    males = client.resources("Patient").search(family="Pager", gender="male").fetch_all()
    assert len(males) == 6 and all(p["gender"] == "male" for p in males)
    born = client.resources("Patient").search(family="Pager", birthdate__ge="1980-01-01")
    assert {p["birthDate"] for p in born.fetch_all()} == {"1980-01-01", "1981-01-01"}
    assert client.resources("Patient").search(family="Pager").count() == 12
    assert client.resources("Patient").search(family="Other").get()["name"][0]["family"] == \
        "Other"
    with pytest.raises(MultipleResourcesFound):
        client.resources("Patient").search(family="Pager").get()
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(family="Nobody").get()
    assert client.resources("Patient").search(family="Nobody").first() is None


def test_fhirpy_conditional_create_and_update(server: LiveServer) -> None:
    """Conditional create with the If-None-Exist header (201, then 200 with the same resource,
    then 412 once two match); a searchset update is a conditional PUT (create, then update).
    See https://hl7.org/fhir/R4/http.html."""
    client = SyncFHIRClient(server.base)
    criteria = f"identifier={SYS}|fp-cond"
    conditional = SyncFHIRClient(server.base, extra_headers={"If-None-Exist": criteria})

    def body() -> Any:
        return conditional.resource("Patient", name=[{"family": "Cond"}],
                                    identifier=[{"system": SYS, "value": "fp-cond"}])

    first = body().save()
    again = body().save()
    assert again.id == first.id and again["meta"]["versionId"] == "1"
    search = client.resources("Patient").search(identifier=f"{SYS}|fp-cond")
    assert search.count() == 1
    # get_or_create() puts the criteria in the URL (POST Patient?identifier=...): the server
    # takes them as If-None-Exist (https://hl7.org/fhir/R4/http.html#ccreate)
    found, created = search.get_or_create(body())
    assert not created and found.id == first.id and found["meta"]["versionId"] == "1"
    other = client.resources("Patient").search(identifier=f"{SYS}|fp-goc")
    made, created = other.get_or_create(client.resource(
        "Patient", identifier=[{"system": SYS, "value": "fp-goc"}]))
    assert created and made.id != first.id
    assert other.get_or_create(client.resource("Patient"))[0].id == made.id
    assert search.count() == 1 and other.count() == 1

    upd_body = client.resource("Patient", identifier=[{"system": SYS, "value": "fp-upd"}],
                               name=[{"family": "V1"}])
    upd_search = client.resources("Patient").search(identifier=f"{SYS}|fp-upd")
    made, was_created = upd_search.update(upd_body)
    assert was_created and made["meta"]["versionId"] == "1"
    upd_body["name"] = [{"family": "V2"}]
    changed, was_created = upd_search.update(upd_body)
    assert not was_created and changed.id == made.id
    assert changed["meta"]["versionId"] == "2" and changed["name"][0]["family"] == "V2"

    client.resource("Patient", identifier=[{"system": SYS, "value": "fp-cond"}]).save()
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for the server's 412
        body().save()
    with pytest.raises(MultipleResourcesFound):
        search.update(body())
    with pytest.raises(MultipleResourcesFound):
        search.get_or_create(body())
    assert search.count() == 2
    _, status = client.resources("Patient").search(identifier=f"{SYS}|fp-upd").delete()
    assert status in (200, 204)
    assert upd_search.count() == 0


def test_fhirpy_transaction_execute(server: LiveServer) -> None:
    """client.execute('/', data=bundle) posts a transaction; urn:uuid references come back
    resolved; a failing transaction raises with the OperationOutcome and writes nothing.
    See https://hl7.org/fhir/R4/http.html."""
    client = SyncFHIRClient(server.base)
    urn = "urn:uuid:a3a3a3a3-0000-4000-8000-000000000001"
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urn, "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "weight"}, "subject": {"reference": urn},
                      "valueQuantity": {"value": 70, "unit": "kg",
                                        "system": "http://unitsofmeasure.org", "code": "kg"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    out = client.execute("/", method="post", data=bundle)
    assert out["type"] == "transaction-response"
    pid = out["entry"][0]["resource"]["id"]
    obs = client.resources("Observation").search(subject=f"Patient/{pid}").get()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert client.resources("Observation").search(patient=pid).count() == 1
    bad = {**bundle, "entry": [*bundle["entry"], {"resource": {"resourceType": "Patient",
                                                                "gender": "sometimes"},
                                                   "request": {"method": "POST",
                                                               "url": "Patient"}}]}
    with pytest.raises(OperationOutcome) as info:
        client.execute("", method="post", data=bad)
    assert "Bundle.entry[2]" in str(info.value)
    assert client.resources("Patient").search(family="Tx").count() == 1


def test_fhirpy_patch(server: LiveServer) -> None:
    """fhirpy's patch() sends a partial resource as `application/json`, taken as a JSON Merge
    Patch (RFC 7396): the named elements change, null removes one, the rest stays; a
    conditional patch (searchset.patch) patches the one match, 412 for several, 404 for none.
    See https://hl7.org/fhir/R4/http.html#patch."""
    client = SyncFHIRClient(server.base)
    pat = client.resource("Patient", name=[{"family": "P"}], active=True,
                          identifier=[{"system": SYS, "value": "fp-patch"}],
                          managingOrganization={"reference": "Organization/x"})
    pat.save()
    out = client.patch("Patient", pat.id, gender="male", managingOrganization=None)
    assert out["gender"] == "male" and out["active"] is True and out["name"] == [{"family": "P"}]
    assert "managingOrganization" not in out and out["meta"]["versionId"] == "2"
    pat.patch(birthDate="1970-01-01")
    assert client.get("Patient", pat.id)["birthDate"] == "1970-01-01"
    search = client.resources("Patient").search(identifier=f"{SYS}|fp-patch")
    patched = search.patch(active=False)
    assert patched.id == pat.id and patched["active"] is False
    assert patched["meta"]["versionId"] == "4"
    with pytest.raises(OperationOutcome) as info:  # 422: the result would be invalid
        client.patch("Patient", pat.id, gender="sometimes")
    assert "Patient.gender" in str(info.value)
    client.resource("Patient", identifier=[{"system": SYS, "value": "fp-patch"}]).save()
    with pytest.raises(MultipleResourcesFound):
        search.patch(active=True)
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(identifier=f"{SYS}|none").patch(active=True)
    assert client.get("Patient", pat.id)["meta"]["versionId"] == "4"


# -- fhirclient (SMART on FHIR python client) ------------------------------------------------


def _smart(server: LiveServer) -> smart_client.FHIRClient:
    return smart_client.FHIRClient(settings={"app_id": "t", "api_base": server.base})


def test_fhirclient_capabilities(server: LiveServer) -> None:
    """The CapabilityStatement parses with the client's strict models.
    See https://hl7.org/fhir/R4/http.html#capabilities."""
    smart = _smart(server)
    caps = CapabilityStatement.read_from("metadata", smart.server)
    assert caps.fhirVersion == "4.0.1"
    assert smart.prepare()  # an open server: ready without authorization


def test_fhirclient_crud(server: LiveServer) -> None:
    """create, read, update, delete and search through fhirclient's models.
    See https://hl7.org/fhir/R4/http.html."""
    smart = _smart(server)
    srv = smart.server
    pat = FcPatient()
    name = HumanName()
    name.family = "Smartclient"
    name.given = ["Grace"]
    pat.name = [name]
    ident = Identifier()
    ident.system = SYS
    ident.value = "fc-1"
    pat.identifier = [ident]
    pat.gender = "female"
    created = pat.create(srv)  # fhirclient returns the body; it does not set the id
    assert created is not None and created["meta"]["versionId"] == "1"
    pid = created["id"]
    read = FcPatient.read(pid, srv)
    assert read.id == pid and read.name[0].family == "Smartclient"
    assert read.meta.versionId == "1"
    read.gender = "other"
    updated = read.update(srv)
    assert updated is not None and updated["meta"]["versionId"] == "2"
    assert FcPatient.read(pid, srv).gender == "other"
    obs = FcObservation({"status": "final", "code": {"text": "x"},
                         "subject": {"reference": f"Patient/{pid}"}})
    oid = obs.create(srv)["id"]
    found = list(FcPatient.where(struct={"family": "Smartclient"}).perform_resources_iter(srv))
    assert [p.id for p in found] == [pid]
    by_ident = list(FcPatient.where(struct={"identifier": f"{SYS}|fc-1"})
                    .perform_resources_iter(srv))
    assert [p.id for p in by_ident] == [pid]
    of_patient = list(FcObservation.where(struct={"subject": f"Patient/{pid}"})
                      .perform_resources_iter(srv))
    assert [o.id for o in of_patient] == [oid]
    read.delete(srv)
    # fhirclient maps only 404 to FHIRNotFoundException; 410 Gone (the spec's answer for a
    # deleted resource) surfaces as requests' HTTPError
    with pytest.raises(requests.HTTPError) as info:
        FcPatient.read(pid, srv)
    assert info.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        FcPatient.read("never-existed", srv)
    assert not list(FcPatient.where(struct={"family": "Smartclient"})
                    .perform_resources_iter(srv))


def test_fhirclient_paging_and_bundles(server: LiveServer) -> None:
    """Searchset and history Bundles parse with the strict models; next links are followed.
    See https://hl7.org/fhir/R4/http.html#paging."""
    smart = _smart(server)
    srv = smart.server
    for i in range(7):
        FcPatient({"name": [{"family": "Pages", "given": [f"N{i}"]}]}).create(srv)
    found = list(FcPatient.where(struct={"family": "Pages", "_count": "3"})
                 .perform_resources_iter(srv))
    assert len(found) == 7 and len({p.id for p in found}) == 7
    hist = FcBundle.read_from("Patient/_history", srv)
    assert hist.type == "history" and hist.total == 7
    assert all(e.request.method == "POST" for e in hist.entry)
