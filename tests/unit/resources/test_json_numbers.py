"""FHIR decimals keep their digits through parse and write (https://hl7.org/fhir/R4/json.html,
https://hl7.org/fhir/R4/datatypes.html#decimal: 1.50 is not 1.5)."""

from __future__ import annotations

import orjson
import pytest

from resources.json_numbers import DecimalText, dumps, loads


@pytest.mark.parametrize("text", [
    b'{"v":1.50}', b'{"v":[1e2,2.0,3.10,-0.00]}', b'{"v":1.5E+3}', b'{"v":100.00}',
    b'{"v":0.12345678901234567890}', b'{"a":{"b":[{"v":7.250}]},"c":"x"}',
])
def test_lossy_numbers_come_back_as_written(text: bytes) -> None:
    assert dumps(loads(text)) == text


def test_plain_json_takes_orjson_and_is_unchanged() -> None:
    text = b'{"v":1.5,"n":3,"id":"3e4f-10.50","w":2.0}'
    value = loads(text)
    assert not any(isinstance(v, DecimalText) for v in value.values())
    assert dumps(value) == text


def test_a_kept_decimal_is_still_a_number() -> None:
    v = loads(b'{"v":1.50}')["v"]
    assert isinstance(v, float) and v == 1.5 and v + 1 == 2.5
    assert dumps({"v": v}, option=orjson.OPT_INDENT_2) == b'{\n  "v": 1.50\n}'


@pytest.mark.parametrize("text", [b'{"v":1.50,}', b'{"v":NaN,"w":1.50}', b'\xff{"v":1.50}',
                                  b'{"v":1.0', b'not json'])
def test_bad_json_is_a_decode_error_on_both_paths(text: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads(text)
