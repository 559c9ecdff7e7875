"""Kafka clients ride out a broker outage. The stream worker: the broker is SIGKILLed
mid-stream and kept down, a second worker starts during the outage, and after the broker
comes back on its port both workers are alive and the aggregates equal the ground truth.

The outage lasts ``LIFTSTREAM_OUTAGE_TEST_S`` seconds: 45 by default, the reduced form CI
runs (a worker starting during an outage once exited after 30 s); the long form is
``LIFTSTREAM_OUTAGE_TEST_S=90 pytest -m slow tests/integration/test_stream_outage.py`` (a
running worker once exited 74 s into such an outage, when a snapshot was due). An SDK
client and a control service started while the broker is down start anyway and work once
it is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from liftstream.settings import Settings
from services.broker.local import LocalKafka
from services.broker.topics import ensure_topics
from tests.integration.helpers_control import ControlService
from tests.integration.helpers_platform import outage_seconds
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    event_messages,
    produce,
    read_topic,
    synthetic_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LocalKafka, Settings]]:
    """A broker of this test's own (it gets killed), and settings pointing at it."""
    broker = LocalKafka(tmp_path / "kafka").start()
    settings = Settings(broker.bootstrap, "outage", 2, tmp_path / "home", "")
    settings.home.mkdir(parents=True)
    ensure_topics(broker.bootstrap, settings.topics)
    for name, value in {
        "LIFTSTREAM_BOOTSTRAP": broker.bootstrap,
        "LIFTSTREAM_NAMESPACE": settings.namespace,
        "LIFTSTREAM_PARTITIONS": "2",
        "LIFTSTREAM_HOME": str(settings.home),
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield broker, settings
    finally:
        broker.stop()


def _outage(seconds: float, workers: list[StreamWorker]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.alive(), f"a worker exited during the outage:\n{worker.log_tail()}"
        time.sleep(0.5)


def _run(own_broker: tuple[LocalKafka, Settings], tmp_path: Path, outage_s: float) -> None:
    broker, settings = own_broker
    events = synthetic_events(seed=41, units_per_tenant=150)
    half = len(events) // 2
    produce(settings, event_messages(settings, events[:half]))
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(StreamWorker(tmp_path / "first.log", snapshot_interval=1.0))
        reader = AggregatesReader(settings)
        stack.callback(reader.close)
        assert_matches_truth(reader.wait_until_caught_up(first, timeout=120), events[:half])

        assert broker.process is not None
        os.killpg(broker.process.pid, signal.SIGKILL)
        broker.process.wait()
        _outage(2.0, [first])
        # A worker starting while the broker is down once gave up after 30 s.
        second = stack.enter_context(StreamWorker(tmp_path / "second.log"))
        _outage(outage_s - 2.0, [first, second])

        port = broker.broker_port
        broker.start()
        assert broker.broker_port == port, "the broker came back on another port"
        returned = time.monotonic()
        produce(settings, event_messages(settings, events[half:]))
        view = reader.wait_until_caught_up(first, timeout=300)
        caught_up_s = time.monotonic() - returned
        assert first.alive() and second.alive(), second.log_tail()
        assert_matches_truth(view, events)
        print(f"outage {outage_s:.0f}s: caught up {caught_up_s:.1f}s after the broker returned")


@pytest.mark.slow
def test_workers_ride_out_a_broker_outage(
    own_broker: tuple[LocalKafka, Settings], tmp_path: Path
) -> None:
    _run(own_broker, tmp_path, outage_seconds(default=45.0))


def test_an_sdk_client_started_during_an_outage_delivers_once_the_broker_is_back(
    own_broker: tuple[LocalKafka, Settings],
) -> None:
    from liftstream import LiftstreamClient

    broker, settings = own_broker
    assert broker.process is not None
    os.killpg(broker.process.pid, signal.SIGKILL)
    broker.process.wait()

    started = time.monotonic()
    client = LiftstreamClient("acme")  # must not fail, nor wait for the broker
    for number in range(200):
        client.track(f"user-{number}", "purchase", value=1.0)
    assert time.monotonic() - started < 5.0, "the client waited for the broker"

    broker.start()
    client.flush(timeout=120)  # raises DeliveryError for anything not stored
    client.close()
    counted = sum(
        len(orjson.loads(value)) if value.startswith(b"[") else 1
        for _, value in read_topic(settings, settings.topics.outcomes)
    )
    assert counted == 200


def test_a_control_service_started_during_an_outage_waits_for_the_broker(
    own_broker: tuple[LocalKafka, Settings], tmp_path: Path
) -> None:
    """It once gave up after 30 s: restarted by the supervisor during an outage, it would
    have exited again and again."""
    broker, _settings = own_broker
    assert broker.process is not None
    os.killpg(broker.process.pid, signal.SIGKILL)
    broker.process.wait()
    control = ControlService(tmp_path / "control.duckdb", dict(os.environ))
    starting = threading.Thread(target=control.start, kwargs={"timeout": 180}, daemon=True)
    starting.start()
    time.sleep(40)
    assert control.process is not None and control.process.poll() is None, control.log_tail()
    broker.start()
    starting.join(timeout=150)
    try:
        assert control.url, f"the control service never came up:\n{control.log_tail()}"
        assert control.request("GET", "/readyz").status_code == 200
    finally:
        control.stop()
