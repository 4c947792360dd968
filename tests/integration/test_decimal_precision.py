"""A decimal keeps the digits it was sent with (https://hl7.org/fhir/R4/datatypes.html#decimal:
"the precision of the decimal value has significance"; https://hl7.org/fhir/R4/json.html):
through create, read, search, _summary, PATCH, a transaction and XML, on both backends."""

from __future__ import annotations

import re

from tests.conftest import LiveServer
from tests.integration.helpers import FHIR_JSON

_OBS = (
    b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
    b'"valueQuantity":{"value":72.50,"unit":"kg"},'
    b'"referenceRange":[{"low":{"value":1e2},"high":{"value":0.12345678901234567890}}]}'
)
_DIGITS = (b'"value":72.50', b'"value":1e2', b'"value":0.12345678901234567890')


def _keeps(body: bytes) -> None:
    for digits in _DIGITS:
        assert digits in body, (digits, body)


def test_decimals_keep_their_digits_through_every_json_path(server: LiveServer) -> None:
    created = server.http.post(server.url("Observation"), data=_OBS, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    _keeps(created.content)
    oid = created.json()["id"]
    _keeps(server.http.get(server.url(f"Observation/{oid}")).content)
    _keeps(server.http.get(server.url(f"Observation?_id={oid}")).content)
    _keeps(server.http.get(server.url(f"Observation?_id={oid}&_elements=valueQuantity,"
                                      "referenceRange&_pretty=true")).content.replace(b" ", b""))
    patched = server.http.patch(server.url(f"Observation/{oid}"), data=b'{"status":"amended"}',
                                headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    _keeps(patched.content)
    assert patched.json()["status"] == "amended"
    bundle = b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":' + _OBS + (
        b',"request":{"method":"POST","url":"Observation"}}]}')
    tx = server.http.post(server.url(), data=bundle, headers=FHIR_JSON)
    assert tx.status_code == 200, tx.text
    location = tx.json()["entry"][0]["response"]["location"]
    _keeps(server.http.get(location.split("/_history")[0]).content)  # an absolute URL


def test_decimals_keep_their_digits_between_xml_and_json(server: LiveServer) -> None:
    created = server.http.post(server.url("Observation"), data=_OBS, headers=FHIR_JSON)
    oid = created.json()["id"]
    xml = server.http.get(server.url(f"Observation/{oid}"),
                          headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200
    assert re.search(rb'<value value="72.50"\s*/>', xml.content), xml.text
    back = server.http.post(server.url("Observation"), data=xml.content,
                            headers={"Content-Type": "application/fhir+xml"})
    assert back.status_code == 201, back.text
    _keeps(server.http.get(server.url(f"Observation/{back.json()['id']}")).content)


def test_invalid_json_with_a_decimal_is_still_a_400(server: LiveServer) -> None:
    bad = server.http.post(server.url("Observation"), data=_OBS[:-1] + b",}", headers=FHIR_JSON)
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
