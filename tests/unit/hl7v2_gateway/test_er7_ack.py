"""ER7 reading (encoding characters, escapes, `""`, repetitions) and ACKs (original and
enhanced mode, ERR segments) checked against the python `hl7` package's parser."""

from __future__ import annotations

import hl7
import pytest

from hl7v2_gateway.ack import AckDecision, build_ack, response_code
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.timefmt import BadTime, parse_dtm

ADT = ("MSH|^~\\&|SND|SFAC|RCV|RFAC|20240102030405+0100||ADT^A08^ADT_A01|C1|P|2.5.1\r"
       "EVN|A08|20240102030405+0100\r"
       "PID|1||123^^^HOSP^MR~999^^^SSA^SS||Smith \\T\\ Sons^Ann\\S\\Marie||\"\"|F\r")


def test_fields_components_repetitions_escapes() -> None:
    msg = Message.parse(ADT)
    pid = msg.require("PID")
    assert [r.c(1) for r in pid.reps(3)] == ["123", "999"]
    assert pid.rep(5).c(1) == "Smith & Sons"
    assert pid.rep(5).c(2) == "Ann^Marie"
    assert pid.is_null(7) and pid.value(7) is None
    assert msg.control_id == "C1" and msg.version == "2.5.1"
    assert msg.message_type == "ADT" and msg.trigger_event == "A08"


def test_other_encoding_characters_from_msh2() -> None:
    text = ADT.replace("|", "#").replace("^", "$").replace("&", "+").replace("~", "@") \
        .replace("MSH#$@\\+", "MSH#$@\\+")
    msg = Message.parse(text)
    pid = msg.require("PID")
    assert [r.c(1) for r in pid.reps(3)] == ["123", "999"]
    assert pid.rep(3).c(5) == "MR"
    assert msg.trigger_event == "A08"


@pytest.mark.parametrize("msh2", ["^^\\&", "^~", "a~\\&"])
def test_bad_encoding_characters_reject(msh2: str) -> None:
    with pytest.raises(Hl7Error) as exc:
        Message.parse(ADT.replace("^~\\&", msh2, 1))
    assert exc.value.rejects and (exc.value.segment, exc.value.field) == ("MSH", 2)


@pytest.mark.parametrize("text", ["", "hello", "PID|1||x\r", "\x00\x01\x02"])
def test_not_hl7(text: str) -> None:
    with pytest.raises(Hl7Error) as exc:
        Message.parse(text)
    assert exc.value.rejects


def test_unsupported_version() -> None:
    with pytest.raises(Hl7Error) as exc:
        Message.parse(ADT.replace("|2.5.1", "|3.0"))
    assert exc.value.code == 203 and exc.value.rejects


def test_original_ack_swaps_sender_and_receiver() -> None:
    msg = Message.parse(ADT)
    ack = hl7.parse(build_ack(msg, "AA"))
    h = ack.segment("MSH")
    assert str(h[3]) == "RCV" and str(h[4]) == "RFAC"
    assert str(h[5]) == "SND" and str(h[6]) == "SFAC"
    assert str(h[9]) == "ACK^A08^ACK" and str(h[12]) == "2.5.1" and str(h[11]) == "P"
    assert str(h[10]) and str(h[10]) != "C1" and len(str(h[10])) <= 20
    msa = ack.segment("MSA")
    assert str(msa[1]) == "AA" and str(msa[2]) == "C1"


def test_error_ack_names_segment_field_and_code() -> None:
    msg = Message.parse(ADT)
    err = Hl7Error(102, "PID-7: bad date", "PID", 1, 7)
    ack = hl7.parse(build_ack(msg, "AE", (err,)))
    e = ack.segment("ERR")
    assert str(e[2]) == "PID^1^7"
    assert str(e[3]) == "102^Data type error^HL70357"
    assert str(e[4]) == "E"
    assert "bad date" in str(e[8])


def test_v23_error_ack_uses_err1() -> None:
    msg = Message.parse(ADT.replace("2.5.1", "2.3"))
    err = Hl7Error(101, "PID-3 missing", "PID", 1, 3)
    ack = hl7.parse(build_ack(msg, "AE", (err,)))
    assert str(ack.segment("MSH")[9]) == "ACK^A08"
    assert str(ack.segment("ERR")[1]) == "PID^1^3^101&Required field missing&HL70357"


@pytest.mark.parametrize(("msh15", "msh16", "code", "expected"), [
    ("", "", "AA", "AA"),  # original mode
    ("AL", "NE", "AA", "CA"),
    ("AL", "NE", "AE", "CE"),
    ("AL", "AL", "AR", "CR"),
    ("ER", "NE", "AA", None),
    ("ER", "NE", "AE", "CE"),
    ("SU", "NE", "AE", None),
    ("NE", "AL", "AA", "AA"),
    ("NE", "ER", "AA", None),
    ("NE", "NE", "AA", None),
])
def test_enhanced_mode(msh15: str, msh16: str, code: str, expected: str | None) -> None:
    text = ADT.replace("|P|2.5.1", f"|P|2.5.1|||{msh15}|{msh16}")
    msg = Message.parse(text)
    assert response_code(msg, AckDecision(code)) == expected


@pytest.mark.parametrize(("text", "fhir"), [
    ("2024", "2024"), ("202403", "2024-03"), ("20240315", "2024-03-15"),
    ("202403151230", "2024-03-15T12:30:00Z"),
    ("20240315123045.12+0215", "2024-03-15T12:30:45.12+02:15"),
    ("20240315123045-0500", "2024-03-15T12:30:45-05:00"),
])
def test_dtm(text: str, fhir: str) -> None:
    assert parse_dtm(text).fhir == fhir


@pytest.mark.parametrize("text", ["2024-03-15", "20241315", "20240230", "2024031525",
                                  "20240315+9900", "abc"])
def test_bad_dtm(text: str) -> None:
    with pytest.raises(BadTime):
        parse_dtm(text)
