"""The supervisor's pure parts: restart backoff, readiness probe address, default media URL."""

from __future__ import annotations

import signal

from fhir_server.serve.services import ChildSpec, media_url
from fhir_server.serve.supervisor import Backoff, describe_exit


def test_backoff_doubles_for_a_crash_loop_up_to_the_cap() -> None:
    b = Backoff(base=0.5, cap=4.0, stable_after=10.0)
    assert [b.next_delay(uptime=0.1) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_starts_over_after_a_stable_run() -> None:
    b = Backoff(base=0.5, cap=30.0, stable_after=10.0)
    b.next_delay(1.0)
    b.next_delay(1.0)
    assert b.next_delay(9.9) == 2.0
    assert b.next_delay(10.0) == 0.5
    assert b.next_delay(0.0) == 1.0


def test_wildcard_addresses_are_probed_on_loopback() -> None:
    def probe(host: str) -> str:
        return ChildSpec("x", "m:f", host, 1).probe_host

    assert probe("0.0.0.0") == "127.0.0.1"
    assert probe("::") == "::1"
    assert probe("10.1.2.3") == "10.1.2.3"
    assert media_url("0.0.0.0", 8081) == "http://127.0.0.1:8081/media"
    assert media_url("::", 9000) == "http://[::1]:9000/media"
    assert media_url("media.example.org", 8081) == "http://media.example.org:8081/media"


def test_exit_descriptions() -> None:
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with 3"
    assert describe_exit(-signal.SIGRTMIN - 1) == f"was killed by signal {signal.SIGRTMIN + 1}"
