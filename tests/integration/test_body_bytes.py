"""The body stored is the body served, on both backends: read, vread, history and search give
back the bytes the server wrote on create (the client's JSON with id and meta set by the
server, https://hl7.org/fhir/R4/http.html#create), keys in the client's order."""

from __future__ import annotations

import orjson

from tests.conftest import LiveServer
from tests.integration.helpers import FHIR_JSON

# keys in neither alphabetical nor length order, unicode outside ASCII, a decimal
_SENT = (
    '{"resourceType":"Observation","status":"final","subject":{"display":"Zoë Ng"},'
    '"code":{"text":"Körpergewicht 体重","coding":[{"system":"http://loinc.org",'
    '"code":"29463-7"}]},"valueQuantity":{"value":72.25,"unit":"kg"},'
    '"effectiveDateTime":"2026-12-01","category":[{"text":"vital-signs"}]}'
)


def _expected(created: dict[str, object]) -> bytes:
    """What the server writes: resourceType, id and meta first, then the client's keys."""
    meta = created["meta"]
    assert isinstance(meta, dict)
    sent = orjson.loads(_SENT)
    out = {"resourceType": sent.pop("resourceType"), "id": created["id"],
           "meta": {"versionId": meta["versionId"], "lastUpdated": meta["lastUpdated"]}}
    return orjson.dumps(out | sent)


def test_read_vread_history_and_search_serve_the_written_bytes(server: LiveServer) -> None:
    r = server.http.post(server.url("Observation"), data=_SENT.encode(), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    expected = _expected(r.json())
    assert r.content == expected
    oid = r.json()["id"]
    read = server.http.get(server.url(f"Observation/{oid}"))
    assert read.status_code == 200 and read.content == expected
    vread = server.http.get(server.url(f"Observation/{oid}/_history/1"))
    assert vread.status_code == 200 and vread.content == expected
    for path in (f"Observation/{oid}/_history", "Observation/_history", "_history"):
        hist = server.http.get(server.url(path))
        assert hist.status_code == 200 and expected in hist.content, path
    found = server.http.get(server.url("Observation"), params={"_id": oid})
    assert found.status_code == 200 and expected in found.content
    assert found.json()["total"] == 1
    coded = server.http.get(server.url("Observation"), params={"code": "29463-7"})
    assert expected in coded.content
