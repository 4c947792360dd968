"""The MLLP listener as an interface engine sees it: a real `telefhir hl7 listen` process,
messages sent with the `hl7` package's MLLPClient over TCP, on SQLite and PostgreSQL.

Every sample message of the FHIR-Converter corpus is answered with the ACK its type earns
(AA for the mapped trigger events, AR 200/201 for the others); repeats get the original ACK;
bad input gets an AE/AR and an error-queue entry while other connections go on; kill -9 after
ACKs loses nothing (the inbox is applied at restart)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from hl7.client import MLLPClient

from hl7v2_gateway.listener import COMMIT_ACK
from hl7v2_gateway.mapping import supported
from tests.integration.hl7_support import (
    SAMPLES,
    Fhir,
    Listener,
    ack_fields,
    listening,
    original_mode,
    sample,
    set_field,
)

ALL_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.hl7"))


def send(port: int, message: str) -> dict[str, str]:
    with MLLPClient("127.0.0.1", port) as client:
        return ack_fields(client.send_message(message))


def message_type(text: str) -> tuple[str, str]:
    msh9 = text.split("\r", 1)[0].split("|")[8].split("^")
    return msh9[0], msh9[1] if len(msh9) > 1 else ""


def expected_answer(text: str, accepted: bool) -> str | None:
    """What the sender asked for: the application ACK (original mode, or MSH-15 NE with
    MSH-16 asking), the accept ACK (MSH-15 AL), or none (MSH-15 and MSH-16 NE)."""
    msh = text.split("\r")[0].split("|")
    accept = (msh[14] if len(msh) > 14 else "").strip()
    application = (msh[15] if len(msh) > 15 else "").strip()

    def wanted(cond: str) -> bool:  # table 0155
        return cond == "AL" or (cond == "ER" and not accepted) or (cond == "SU" and accepted)

    if not accept and not application:
        return "AA" if accepted else "AR"
    if wanted(accept or "AL"):
        return "CA" if accepted else "CR"
    if wanted(application or "AL") and accept:
        return "AA" if accepted else "AR"
    return None


def test_every_sample_gets_the_ack_its_type_earns(db_url: str, tmp_path: Path) -> None:
    mapped = set(supported())
    fhir = Fhir(db_url)
    expected_done = 0
    answered = set()
    with listening(db_url, tmp_path) as node, MLLPClient("127.0.0.1", node.port) as client:
        for i, name in enumerate(ALL_SAMPLES):
            text = sample(name, control_id=f"T{i:04d}")
            accepted = message_type(text) in mapped
            expected_done += accepted
            expected = expected_answer(text, accepted)
            raw = client.send_message(text)
            answered.add(expected)
            if expected is None:  # MLLP's commit acknowledgment; the ACK is in the inbox
                assert raw == COMMIT_ACK, name
                row = fhir.inbox_row(f"T{i:04d}")
                assert row.ack_code == ("AA" if accepted else "AR"), name
                continue
            ack = ack_fields(raw)
            assert ack["code"] == expected, (name, ack)
            assert ack["control"] == f"T{i:04d}", name
            assert ack["msh10"] and ack["msh10"] != f"T{i:04d}"
            assert ack["version"] == text.split("\r")[0].split("|")[11], name
            if not accepted:
                assert ack["err_code"] in ("200", "201"), (name, ack)
        counts = fhir.wait_processed()
    assert answered == {"AA", "AR", "CA", "CR", None}
    assert counts.get("done") == expected_done, (counts, node.log()[-3000:])
    assert counts.get("error") == len(ALL_SAMPLES) - expected_done
    assert fhir.search("Patient"), "mapped messages wrote patients"
    fhir.close()


def test_repeated_control_id_gets_the_original_ack_once(db_url: str, tmp_path: Path) -> None:
    fhir = Fhir(db_url)
    text = sample("ORU-R01-RMGEAD.hl7", control_id="DUP-1")
    with listening(db_url, tmp_path) as node:
        first = send(node.port, text)
        second = send(node.port, text)
        third = send(node.port, text)
        fhir.wait_processed()
    assert first["code"] == "AA"
    assert first == second == third  # the same ACK, own control id included
    assert fhir.inbox() == {"done": 1}
    counts_before = {t: len(fhir.search(t)) for t in ("Patient", "Observation")}
    assert all(counts_before.values())
    # another sender may reuse the control id: a different message
    other = set_field(text, "MSH", 3, "OTHERAPP")
    with listening(db_url, tmp_path) as node:
        assert send(node.port, other)["code"] == "AA"
        fhir.wait_processed()
    assert fhir.inbox() == {"done": 2}
    fhir.close()


def test_many_concurrent_connections_in_order(db_url: str, tmp_path: Path) -> None:
    """8 connections, each sending A01 then A08s with growing names for its own patient;
    every ACK is AA and each patient ends with the last name its connection sent."""
    fhir = Fhir(db_url)
    base = sample("ADT01-23.hl7")
    errors: list[str] = []

    def run(n: int, port: int) -> None:
        try:
            with MLLPClient("127.0.0.1", port) as c:
                for k in range(6):
                    t = set_field(base, "MSH", 10, f"C{n}-{k}")
                    t = set_field(t, "MSH", 7, f"2024010101{k:02d}00")
                    t = set_field(t, "EVN", 2, f"2024010101{k:02d}00")
                    if k:
                        t = set_field(t, "MSH", 9, "ADT^A08")
                    t = set_field(t, "PID", 3, f"CONN{n}^^^AccMgr^MR")
                    t = set_field(t, "PID", 5, f"LAST{k}^CONN{n}")
                    t = set_field(t, "PV1", 19, f"V{n}^^^AccMgr^VN")
                    ack = ack_fields(c.send_message(t))
                    if ack["code"] != "AA" or ack["control"] != f"C{n}-{k}":
                        errors.append(str(ack))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    with listening(db_url, tmp_path) as node:
        threads = [threading.Thread(target=run, args=(n, node.port)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        fhir.wait_processed()
    assert not errors
    for n in range(8):
        pat = fhir.one("Patient", identifier=f"https://telefhir.org/fhir/sid/hl7v2/AccMgr|CONN{n}")
        assert pat["name"][0]["family"] == "LAST5"
    assert fhir.inbox() == {"done": 48}
    fhir.close()


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes; read until an MLLP frame has arrived or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while b"\x1c\r" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


BAD_INPUTS = {
    "garbage bytes": (b"\x00\x17garbage\xff\xfe that is not HL7", "AR"),
    "an HTTP request": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "AR"),
    "a message without frame bytes": (b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\r\x1c\r", "AR"),
    "missing MSH": (b"\x0bPID|1||123^^^H^MR\r\x1c\r", "AR"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bytes_that_are_not_hl7_get_an_ar(case: str, db_url: str, tmp_path: Path) -> None:
    data, code = BAD_INPUTS[case]
    fhir = Fhir(db_url)
    with listening(db_url, tmp_path) as node:
        ack = ack_fields(raw_exchange(node.port, data))
        assert ack["code"] == code
        # the listener still serves
        assert send(node.port, sample("ADT01-23.hl7", "AFTER-BAD"))["code"] == "AA"
        fhir.wait_processed()
    assert fhir.inbox().get("error") == 1
    fhir.close()


def _adt(**fields: str) -> str:
    text = original_mode(sample("ADT-A01-01.hl7", control_id="BAD-1"))
    for key, value in fields.items():
        seg, n = key.split("_")
        text = set_field(text, seg, int(n), value)
    return text


BAD_MESSAGES = {
    "unknown message type": (_adt(MSH_9="ZZZ^Z01"), "AR", "200", "MSH^1^9^1^1"),
    "unknown trigger event": (_adt(MSH_9="ADT^A99"), "AR", "201", "MSH^1^9^1^2"),
    "missing PID": ("\r".join(s for s in _adt().split("\r") if not s.startswith("PID")),
                    "AE", "100", "PID^1"),
    "missing patient identifier": (_adt(PID_2="", PID_3="", PID_4=""), "AE", "101", "PID^1^3"),
    "wrong encoding characters": (_adt().replace("MSH|^~\\&", "MSH|^^\\&", 1), "AR", "102",
                                  "MSH^1^2"),
    "invalid birth date": (_adt(PID_7="19241340"), "AE", "102", "PID^1^7"),
    "invalid admit time": (_adt(PV1_44="2005011004550"), "AE", "102", "PV1^1^44"),
    "invalid gender": (_adt(PID_8="Q"), "AE", "103", "PID^1^8"),
    "unsupported version": (_adt(MSH_12="9.9"), "AR", "203", "MSH^1^12"),
    "missing control id": (_adt(MSH_10=""), "AR", "101", "MSH^1^10"),
}


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
def test_bad_messages_get_ae_or_ar_and_an_error_entry(case: str, db_url: str,
                                                      tmp_path: Path) -> None:
    text, code, err_code, location = BAD_MESSAGES[case]
    fhir = Fhir(db_url)
    with listening(db_url, tmp_path) as node:
        ack = send(node.port, text)
        fhir.wait_processed()
    assert (ack["code"], ack["err_code"], ack["err_location"]) == (code, err_code, location)
    assert fhir.inbox() == {"error": 1}
    assert not fhir.search("Patient")
    fhir.close()


def test_bad_number_in_a_result(db_url: str, tmp_path: Path) -> None:
    text = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7", "BADNUM"))
    text = text.replace("|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN^^^^^^Hemoglobin "
                        "[Mass/volume] in Blood||12.5|", "|NM|718-7^Hemoglobin||twelve|")
    fhir = Fhir(db_url)
    with listening(db_url, tmp_path) as node:
        ack = send(node.port, text)
    assert (ack["code"], ack["err_code"], ack["err_location"]) == ("AE", "102", "OBX^2^5")
    assert not fhir.search("Observation")
    fhir.close()


def test_frame_that_never_ends_is_answered_at_the_idle_timeout(db_url: str,
                                                               tmp_path: Path) -> None:
    config = tmp_path / "hl7.toml"
    config.write_text("idle_timeout = 1.5\n")
    fhir = Fhir(db_url)
    with listening(db_url, tmp_path, config) as node:
        t0 = time.monotonic()
        ack = ack_fields(raw_exchange(node.port, b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5"))
        assert ack["code"] == "AR" and time.monotonic() - t0 >= 1.4
        assert send(node.port, sample("ADT01-23.hl7", "AFTER-HANG"))["code"] == "AA"
    assert fhir.inbox().get("error") == 1
    fhir.close()


def test_ten_megabyte_message_is_refused_and_others_go_on(db_url: str, tmp_path: Path) -> None:
    fhir = Fhir(db_url)
    big = original_mode(sample("MDM-T02-01.hl7", "BIG")).rstrip("\r")
    big += "\rOBX|9|TX|||" + "x" * 10_000_000
    with listening(db_url, tmp_path) as node:
        done: dict[str, str] = {}

        def other() -> None:
            done["ack"] = send(node.port, sample("ADT01-23.hl7", "DURING-BIG"))["code"]

        with MLLPClient("127.0.0.1", node.port) as c:
            t = threading.Thread(target=other)
            t.start()
            ack = ack_fields(c.send_message(big))
            t.join(60)
            assert ack["code"] == "AR"
            # the connection is still in step: the next message is answered
            assert ack_fields(c.send_message(sample("ADT01-28.hl7", "AFTER-BIG")))["code"] == "AA"
        assert done["ack"] == "AA"
        fhir.wait_processed()
    assert fhir.inbox() == {"done": 2, "error": 1}
    fhir.close()


def test_kill_9_after_ack_loses_nothing(db_url: str, tmp_path: Path) -> None:
    """Messages acknowledged before kill -9 are all applied after the restart, once."""
    fhir = Fhir(db_url)
    base = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
    acked: list[str] = []
    node = Listener(db_url, tmp_path / "l1.log")
    stop = threading.Event()

    def feed() -> None:
        try:
            with MLLPClient("127.0.0.1", node.port) as c:
                k = 0
                while not stop.is_set():
                    cid = f"K{k}"
                    t = set_field(base, "MSH", 10, cid)
                    t = set_field(t, "PID", 3, f"KILL{k % 20}^^^NIST MPI^MR")
                    t = set_field(t, "OBR", 3, f"F{k}^NIST Lab Filler")
                    if ack_fields(c.send_message(t))["code"] == "AA":
                        acked.append(cid)
                    k += 1
        except Exception:  # noqa: BLE001 - the listener was killed mid-exchange
            pass

    thread = threading.Thread(target=feed)
    thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    node.kill()  # SIGKILL to the process group, mid-stream
    stop.set()
    thread.join(30)
    assert len(acked) >= 30
    with listening(db_url, tmp_path):
        counts = fhir.wait_processed()
    assert counts.get("done", 0) >= len(acked)
    assert not counts.get("error")
    reports = fhir.search("DiagnosticReport")
    fillers = [i["value"] for r in reports for i in r["identifier"]]
    assert len(fillers) == len(set(fillers))  # nothing applied twice
    for cid in acked:
        assert f"F{cid[1:]}" in fillers
    fhir.close()


def test_two_listeners_on_one_postgresql_store(tmp_path: Path) -> None:
    """Two nodes on one PostgreSQL database, an engine that fails over and resends to the
    other: every message once in the inbox, each applied once, the same ACK from both."""
    from tests.pg import pg_server

    db = pg_server().new_database()
    fhir = Fhir(db)
    base = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
    texts = []
    for k in range(12):
        t = set_field(base, "MSH", 10, f"N{k}")
        t = set_field(t, "PID", 3, f"NODE{k % 3}^^^NIST MPI^MR")
        texts.append(set_field(t, "OBR", 3, f"NF{k}^NIST Lab Filler"))
    a = Listener(db, tmp_path / "a.log")
    b = Listener(db, tmp_path / "b.log")
    try:
        acks: dict[str, list[dict[str, str]]] = {}
        errors: list[str] = []

        def feed(port: int, order: list[str]) -> None:
            try:
                with MLLPClient("127.0.0.1", port) as c:
                    for t in order:
                        ack = ack_fields(c.send_message(t))
                        acks.setdefault(ack["control"], []).append(ack)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=feed, args=(a.port, texts)),
                   threading.Thread(target=feed, args=(b.port, texts[::-1]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        counts = fhir.wait_processed()
    finally:
        a.kill()
        b.kill()
    assert not errors
    assert counts == {"done": 12}
    for cid, got in acks.items():
        assert len(got) == 2 and got[0] == got[1], cid  # the first ACK, from either node
    assert len(fhir.search("DiagnosticReport")) == 12
    assert len(fhir.search("Patient")) == 3
    obs = fhir.search("Observation")
    assert len(obs) == 12 * 28
    fhir.close()


def test_sigterm_stops_cleanly_and_nothing_acknowledged_is_lost(db_url: str,
                                                                tmp_path: Path) -> None:
    fhir = Fhir(db_url)
    node = Listener(db_url, tmp_path / "term.log")
    base = original_mode(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
    acked = []
    with MLLPClient("127.0.0.1", node.port) as c:
        for k in range(10):
            t = set_field(set_field(base, "MSH", 10, f"S{k}"), "OBR", 3, f"SF{k}^L")
            assert ack_fields(c.send_message(t))["code"] == "AA"
            acked.append(k)
    t0 = time.monotonic()
    node.kill(signal.SIGTERM)
    assert node.proc.returncode == 0, node.log()[-2000:]
    assert time.monotonic() - t0 < 30
    assert "stopping" in node.log()
    with listening(db_url, tmp_path):
        assert fhir.wait_processed() == {"done": 10}
    assert len(fhir.search("DiagnosticReport")) == 10
    fhir.close()
