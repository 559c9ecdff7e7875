"""The SDK's HTTP delivery against the real collector process and broker.

Events sent with ``delivery="http"`` are read back from Kafka by ``event_id``; the
collector is stopped mid-way and restarted on its port, and what was sent meanwhile
arrives once it is back. A retry after a lost answer may store a second copy of a batch
in Kafka: such copies carry the same ``event_id`` (downstream de-duplicates by it), so
the checks are on distinct ``event_id`` s and on every stored copy equalling what was sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest

from liftstream.client import LiftstreamClient
from liftstream.errors import DeliveryError
from liftstream.events import Exposure, Outcome
from liftstream.http_transport import HttpTransport
from liftstream.settings import Settings
from schemas import Experiment, ExposureEvent, OutcomeEvent
from schemas.events import parse_event_message
from tests.integration.helpers_collector import CollectorProcess, read_topic
from tests.integration.helpers_control import create_tenant
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout-button",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
    }
)
Sent = list[Exposure | Outcome]


def stored_events(settings: Settings) -> list[ExposureEvent | OutcomeEvent]:
    topics = settings.topics
    return [
        event
        for topic in (topics.exposures, topics.outcomes)
        for _, value in read_topic(settings.bootstrap, topic)
        for event in parse_event_message(value)
    ]


def as_sent(event: ExposureEvent | OutcomeEvent) -> ExposureEvent | OutcomeEvent:
    return event.model_copy(update={"received_at": None})  # the collector stamps it


def test_events_sent_over_http_are_stored_once_and_refusals_are_reported(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    sent: Sent = []
    with CollectorProcess(tmp_path / "collector.log") as collector:
        collector.wait_until_key_known(keys["ingest"])
        with LiftstreamClient(
            "acme", delivery="http", collector_url=collector.url, api_key=keys["ingest"]
        ) as client:
            for index in range(40):
                unit = f"user-{index}"
                exposure = client.expose(EXPERIMENT, unit)
                assert exposure is not None
                sent.append(exposure)
                for _ in range(2):  # a service exposes on every request: logged once
                    again = client.expose(EXPERIMENT, unit)
                    assert again is not None and again.variant_key == exposure.variant_key
                sent.append(client.track(unit, "purchase", value=index))
            client.flush(timeout=60)
            assert isinstance(client.transport, HttpTransport)
            assert client.transport.stats.accepted == len(sent) == 80

        # Events of another tenant than the key's are refused by the collector, per event.
        with LiftstreamClient(
            "globex", delivery="http", collector_url=collector.url, api_key=keys["ingest"]
        ) as intruder:
            intruder.track("user-1", "purchase")
            intruder.track("user-2", "purchase")
            with pytest.raises(DeliveryError, match=r"2 event\(s\) rejected.*tenant_id"):
                intruder.flush(timeout=60)

    stored = stored_events(platform_settings)
    assert Counter(str(event.event_id) for event in stored) == Counter(
        str(event.event_id) for event in sent
    )  # each exactly once, and nothing of globex
    by_id = {model.event_id: model for model in (event.to_model() for event in sent)}
    assert all(as_sent(event) == by_id[event.event_id] for event in stored)


def test_events_sent_while_the_collector_is_down_arrive_once_it_is_back(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    collector = CollectorProcess(tmp_path / "collector.log").start()
    # A restarted collector answers 401 until it has re-read the keys from the control
    # topic, and a 401 is final for the SDK: the test holds the retries until it is ready.
    ready_again = threading.Event()
    waits: list[float] = []

    def held_retry(seconds: float) -> None:
        waits.append(seconds)
        ready_again.wait(120)

    try:
        collector.wait_until_key_known(keys["ingest"])
        port = urlparse(collector.url).port
        transport = HttpTransport(collector.url, keys["ingest"], linger_s=0.05, sleep=held_retry)
        client = LiftstreamClient("acme", delivery=transport)
        sent: Sent = [client.track(f"before-{i}", "page_view") for i in range(60)]

        collector.stop()  # mid-way: the first events may be queued, in flight or stored
        sent += [client.track(f"during-{i}", "page_view") for i in range(60)]
        wait_until(
            lambda: transport.stats.retries > 0,
            timeout=60,
            what="the transport never retried",
            interval=0.05,
        )

        collector.args = ["--port", str(port)]  # after --port 0: the same port again
        collector.start()
        collector.wait_until_key_known(keys["ingest"])
        ready_again.set()
        sent += [client.track(f"after-{i}", "page_view") for i in range(60)]
        client.close(timeout=60)
    finally:
        ready_again.set()
        collector.stop()

    stats = transport.stats
    assert (stats.sent, stats.accepted, stats.rejected, stats.dropped) == (180, 180, 0, 0)
    assert stats.retries >= 1 and waits
    stored = stored_events(platform_settings)
    assert {str(event.event_id) for event in stored} == {event.event_id for event in sent}
    by_id = {model.event_id: model for model in (event.to_model() for event in sent)}
    assert all(as_sent(event) == by_id[event.event_id] for event in stored)
