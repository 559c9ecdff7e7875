"""The broker stops during ingestion and comes back: nothing acknowledged is lost or doubled.

Runs its own broker (``LocalKafka`` from the Maven Central jars), since the shared test
broker must not be stopped. While the broker is down the collector answers 503 and
``/readyz`` says so; once it is back the same collector process serves again, and every
event that got a 2xx is in Kafka exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from liftstream.settings import Settings
from schemas.events import parse_event_message
from services.broker import local
from services.broker.local import LocalKafka
from services.broker.topics import ensure_topics
from tests.integration.helpers_collector import CollectorProcess, outcome, read_topic
from tests.integration.helpers_control import create_tenant

pytestmark = pytest.mark.integration


def test_events_acknowledged_around_a_broker_outage_are_stored_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The restarted broker must come back on its port (the collector knows only that one).
    # LocalKafka tests a port by binding it without SO_REUSEADDR, which fails for a minute
    # while the old connections sit in TIME_WAIT; the JVM binds with SO_REUSEADDR and can.
    monkeypatch.setattr(local, "port_is_free", lambda port: True)
    data_dir = tmp_path / "kafka"
    broker = LocalKafka(data_dir).start()
    restarted: LocalKafka | None = None
    try:
        settings = Settings(broker.bootstrap, "outage", 4, tmp_path / "home", "")
        ensure_topics(settings.bootstrap, settings.topics)
        keys = create_tenant(settings.bootstrap, settings.topics.control, "acme")
        env = {
            "LIFTSTREAM_BOOTSTRAP": settings.bootstrap,
            "LIFTSTREAM_NAMESPACE": settings.namespace,
            "LIFTSTREAM_HOME": str(settings.home),
            "LIFTSTREAM_COLLECTOR_PRODUCE_TIMEOUT_S": "3",
        }
        acknowledged: list[str] = []

        def send(collector: CollectorProcess, label: str) -> httpx.Response:
            batch = [outcome(f"{label}-{i}") for i in range(20)]
            answer = collector.post(batch, keys["ingest"])
            if answer.is_success:
                acknowledged.extend(event["event_id"] for event in batch)
            return answer

        with CollectorProcess(tmp_path / "collector.log", env) as collector:
            collector.wait_until_key_known(keys["ingest"])
            assert [send(collector, f"before{n}").status_code for n in range(3)] == [202] * 3

            broker.stop()
            during = [send(collector, f"during{n}") for n in range(2)]
            assert [answer.status_code for answer in during] == [503, 503]
            assert all("retry" in answer.json()["detail"] for answer in during)
            assert httpx.get(f"{collector.url}/readyz", timeout=10).status_code == 503
            assert collector.alive()

            restarted = LocalKafka(data_dir).start()
            assert restarted.bootstrap == settings.bootstrap, "the broker keeps its port"
            deadline = time.monotonic() + 60
            after = 0
            while after < 3:
                if send(collector, f"after{after}").status_code == 202:
                    after += 1
                else:
                    assert time.monotonic() < deadline, collector.log_tail()
                    time.sleep(0.5)
            assert httpx.get(f"{collector.url}/readyz", timeout=10).status_code == 200

        stored = Counter(
            str(event.event_id)
            for _, value in read_topic(settings.bootstrap, settings.topics.outcomes)
            for event in parse_event_message(value)
        )
        assert len(acknowledged) == 120
        assert all(stored[event_id] == 1 for event_id in acknowledged), {
            event_id: stored[event_id] for event_id in acknowledged if stored[event_id] != 1
        }
    finally:
        for each in (restarted, broker):
            if each is not None:
                each.stop()
