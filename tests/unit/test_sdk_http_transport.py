"""The SDK's HTTP transport against a fake collector (``httpx.MockTransport``).

Batching, the bounded queue that drops the oldest event, which answers are retried and
after how long (Retry-After, full-jitter backoff), counters, flush, close and exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
from liftstream.http_transport import HttpTransport, TransportStats
from liftstream.retry import MAX_RETRY_AFTER_S, backoff_delay, retry_after_s
from schemas import OutcomeEvent

Handler = Callable[[httpx.Request], httpx.Response]
URL = "http://collector.test"
KEY = "lsk_abc_secret"


def outcome(index: int) -> OutcomeEvent:
    return OutcomeEvent(
        tenant_id="acme", unit_id=f"user-{index}", timestamp=datetime.now(UTC), event="click"
    )


def accepted(request: httpx.Request) -> httpx.Response:
    count = len(json.loads(request.content)["events"])
    return httpx.Response(202, json={"accepted": count, "rejected": 0, "errors": [], "flags": []})


class FakeCollector:
    """Records each request's events; answers from ``script`` first, then 202."""

    def __init__(self, *script: Handler) -> None:
        self.script = list(script)
        self.batches: list[list[dict[str, Any]]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.batches.append(json.loads(request.content)["events"])
        self.headers.append(request.headers)
        handler = self.script.pop(0) if self.script else accepted
        return handler(request)

    @property
    def units(self) -> list[str]:
        return [event["unit_id"] for batch in self.batches for event in batch]


def answer(status: int, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, json={"detail": "nope"}, headers=headers)


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def make(delays: list[float]) -> Iterator[Callable[..., HttpTransport]]:
    made: list[HttpTransport] = []

    def make(collector: FakeCollector, **options: Any) -> HttpTransport:
        transport = HttpTransport(
            URL,
            KEY,
            transport=httpx.MockTransport(collector),
            sleep=delays.append,
            random=lambda: 0.5,
            **{"linger_s": 60.0, **options},
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(timeout=5)


def test_events_go_in_batches_in_order_with_the_api_key(make: Callable[..., HttpTransport]) -> None:
    collector = FakeCollector()
    transport = make(collector, max_batch_events=10)
    for index in range(25):
        transport.send(outcome(index))
    transport.flush(timeout=10)  # a flush sends the last, partial batch without lingering
    assert collector.units == [f"user-{index}" for index in range(25)]
    assert max(len(batch) for batch in collector.batches) == 10
    assert all(h["authorization"] == f"Bearer {KEY}" for h in collector.headers)
    assert transport.stats == TransportStats(sent=25, accepted=25, rejected=0, dropped=0, retries=0)
    assert transport.stats.pending == 0


def test_a_batch_is_cut_at_the_byte_limit(make: Callable[..., HttpTransport]) -> None:
    collector = FakeCollector()
    size = len(outcome(0).to_json())
    transport = make(collector, max_batch_events=100, max_batch_bytes=3 * size + 20)
    for index in range(7):
        transport.send(outcome(index))
    transport.flush(timeout=10)
    assert [len(batch) for batch in collector.batches] == [3, 3, 1]


def test_a_full_queue_drops_the_oldest_events_and_send_never_blocks(
    make: Callable[..., HttpTransport],
) -> None:
    in_request, release = threading.Event(), threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        in_request.set()
        release.wait(30)
        return accepted(request)

    collector = FakeCollector(stuck)
    transport = make(collector, max_queue_events=5, linger_s=0)
    transport.send(outcome(0))
    assert in_request.wait(10), "the first batch is in flight"
    for index in range(1, 9):  # the collector hangs; the caller does not
        transport.send(outcome(index))
    assert transport.stats.dropped == 3
    release.set()
    with pytest.raises(DeliveryError, match=r"0 event\(s\) rejected .* 3 dropped.*queue full"):
        transport.flush(timeout=10)
    assert collector.units == ["user-0", *(f"user-{index}" for index in range(4, 9))]
    assert transport.stats.pending == 0
    transport.flush(timeout=10)  # reported once


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_retried_with_the_same_events(
    make: Callable[..., HttpTransport], delays: list[float], status: int
) -> None:
    collector = FakeCollector(answer(status), answer(status))
    transport = make(collector, backoff_base_s=0.5, backoff_max_s=30)
    transport.send(outcome(1))
    transport.send(outcome(2))
    transport.flush(timeout=10)
    first, second, third = collector.batches
    assert first == second == third  # same event_ids each time
    assert delays == [0.25, 0.5]  # full jitter: random (0.5 here) * 0.5 * 2**attempt
    assert transport.stats == TransportStats(sent=2, accepted=2, rejected=0, dropped=0, retries=2)


def test_retry_after_is_honoured(make: Callable[..., HttpTransport], delays: list[float]) -> None:
    collector = FakeCollector(
        answer(429, **{"Retry-After": "3"}), answer(503, **{"Retry-After": "1"})
    )
    transport = make(collector)
    transport.send(outcome(1))
    transport.flush(timeout=10)
    assert delays == [3.0, 1.0]


def test_connection_errors_are_retried(
    make: Callable[..., HttpTransport], delays: list[float]
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    collector = FakeCollector(refused, refused, refused)
    transport = make(collector, backoff_base_s=1, backoff_max_s=2)
    transport.send(outcome(1))
    transport.flush(timeout=10)
    assert delays == [0.5, 1.0, 1.0]  # capped at backoff_max_s before the jitter
    assert transport.stats.accepted == 1 and transport.stats.retries == 3


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_other_client_errors_are_not_retried_but_counted_as_rejected(
    make: Callable[..., HttpTransport], status: int
) -> None:
    collector = FakeCollector(answer(status))
    transport = make(collector)
    transport.send(outcome(1))
    transport.send(outcome(2))
    with pytest.raises(DeliveryError, match=rf"2 event\(s\) rejected.*HTTP {status}: nope"):
        transport.flush(timeout=10)
    assert len(collector.batches) == 1
    assert transport.stats == TransportStats(sent=2, accepted=0, rejected=2, dropped=0, retries=0)
    transport.send(outcome(3))
    transport.flush(timeout=10)  # later batches go on
    assert transport.stats.accepted == 1


def test_per_event_errors_of_a_partial_batch_count_as_rejected(
    make: Callable[..., HttpTransport],
) -> None:
    error = {"index": 1, "field": "tenant_id", "reason": "not the key's tenant"}
    partial = httpx.Response(207, json={"accepted": 2, "rejected": 1, "errors": [error]})
    collector = FakeCollector(lambda request: partial)
    transport = make(collector)
    for index in range(3):
        transport.send(outcome(index))
    with pytest.raises(DeliveryError, match=r"1 event\(s\) rejected.*event 1: tenant_id: not"):
        transport.flush(timeout=10)
    assert (transport.stats.accepted, transport.stats.rejected) == (2, 1)


def test_flush_times_out_while_the_collector_is_down_and_the_events_stay_queued() -> None:
    down = threading.Event()
    down.set()

    def flaky(request: httpx.Request) -> httpx.Response:
        return answer(503)(request) if down.is_set() else accepted(request)

    transport = HttpTransport(
        URL, KEY, transport=httpx.MockTransport(flaky), backoff_base_s=0.01, backoff_max_s=0.02
    )
    try:
        transport.send(outcome(1))
        with pytest.raises(DeliveryError, match=r"1 event\(s\) not yet delivered"):
            transport.flush(timeout=0.3)
        down.clear()
        transport.flush(timeout=10)
        assert transport.stats.accepted == 1 and transport.stats.retries >= 1
    finally:
        transport.close(timeout=5)


def test_close_flushes_stops_the_thread_and_refuses_later_events(
    make: Callable[..., HttpTransport],
) -> None:
    collector = FakeCollector()
    transport = make(collector)
    transport.send(outcome(1))
    transport.close()
    assert collector.units == ["user-1"]
    assert not transport._thread.is_alive()
    with pytest.raises(PlatformUnavailableError, match="closed"):
        transport.send(outcome(2))
    transport.close()  # twice is fine


def test_close_gives_up_on_an_unreachable_collector_and_counts_the_rest_as_dropped() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = HttpTransport(URL, KEY, transport=httpx.MockTransport(refused), linger_s=0)
    for index in range(3):
        transport.send(outcome(index))
    with pytest.raises(DeliveryError, match="3 dropped"):
        transport.close(timeout=0.2)
    assert transport.stats.dropped == 3 and transport.stats.pending == 0
    assert not transport._thread.is_alive()


def test_events_still_queued_are_sent_at_interpreter_exit() -> None:
    program = """
import json, httpx
from datetime import UTC, datetime
from liftstream.http_transport import HttpTransport
from schemas import OutcomeEvent

def collector(request):
    events = json.loads(request.content)["events"]
    print("received", len(events), flush=True)
    return httpx.Response(202, json={"accepted": len(events), "rejected": 0, "errors": []})

transport = HttpTransport("http://collector.test", "k", transport=httpx.MockTransport(collector),
                          linger_s=600)
for index in range(3):
    transport.send(OutcomeEvent(tenant_id="acme", unit_id=f"u{index}",
                                timestamp=datetime.now(UTC), event="click"))
print("exiting", flush=True)
"""
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.split("\n")[:2] == ["exiting", "received 3"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_batch_events", 0),
        ("max_queue_events", -1),
        ("linger_s", -0.1),
        ("backoff_base_s", 0),
        ("request_timeout_s", 0),
    ],
)
def test_bad_options_are_refused_naming_the_field(option: str, value: float) -> None:
    with pytest.raises(InvalidInputError, match=rf"(?m)^  {option}: must be"):
        HttpTransport(URL, KEY, **{option: value})


def test_a_missing_key_and_a_bad_url_are_refused_naming_the_fields() -> None:
    with pytest.raises(InvalidInputError) as caught:
        HttpTransport("collector.test:8791", "")
    assert [p.field for p in caught.value.problems] == ["collector_url", "api_key"]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    assert backoff_delay(0, 0.5, 30, lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30, lambda: 1.0) == 4.0
    assert backoff_delay(10, 0.5, 30, lambda: 1.0) == 30.0
    assert backoff_delay(10_000, 0.5, 30, lambda: 1.0) == 30.0
    assert backoff_delay(3, 0.5, 30, lambda: 0.0) == 0.0


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_s("2") == 2.0
    assert retry_after_s(" 1.5 ") == 1.5
    assert retry_after_s(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after_s("-3") == 0.0
    assert retry_after_s("99999") == MAX_RETRY_AFTER_S
    assert retry_after_s("soon") is None
    assert retry_after_s("nan") is None
    assert retry_after_s(None) is None
