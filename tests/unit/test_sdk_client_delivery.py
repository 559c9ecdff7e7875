"""The client's choice of transport and its exposure de-duplication, on both transports.

Kafka is a recording fake producer; the collector an ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.exposure_dedup import ExposureDeduplicator
from liftstream.http_transport import HttpTransport
from schemas import Experiment
from schemas.config import ConfigSnapshot
from tests.unit.fake_producer import RecordingProducer

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout-button",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
    }
)


class _Collector:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        self.events.extend(events)
        return httpx.Response(202, json={"accepted": len(events), "rejected": 0, "errors": []})


@pytest.fixture(autouse=True)
def _no_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    for name in ("COLLECTOR_URL", "API_KEY"):
        monkeypatch.delenv(f"LIFTSTREAM_{name}", raising=False)


def _kafka_client(producer: RecordingProducer, **options: Any) -> LiftstreamClient:
    return LiftstreamClient("acme", bootstrap="unused:9092", producer=producer, **options)


def _http_client(collector: _Collector, **options: Any) -> LiftstreamClient:
    transport = HttpTransport(
        "http://collector.test", "lsk_k_s", transport=httpx.MockTransport(collector)
    )
    return LiftstreamClient("acme", delivery=transport, **options)


def _expose_twice_each(client: LiftstreamClient) -> None:
    for _ in range(2):
        for unit in ("user-1", "user-2"):
            client.expose(EXPERIMENT, unit)
        client.expose(EXPERIMENT, "qa", variant="control")
        client.expose(EXPERIMENT, "qa", variant="treatment")  # another variant: logged too
        client.track("user-1", "purchase")  # outcomes are never de-duplicated


def test_kafka_delivery_logs_each_exposure_once_per_process() -> None:
    producer = RecordingProducer()
    with _kafka_client(producer) as client:
        _expose_twice_each(client)
        assert client.exposures.duplicates == 4
    topics = [topic.rsplit(".", 1)[1] for topic, _, _ in producer.events()]
    assert topics.count("exposures") == 4 and topics.count("outcomes") == 2


def test_http_delivery_logs_each_exposure_once_per_process() -> None:
    collector = _Collector()
    with _http_client(collector) as client:
        _expose_twice_each(client)
    kinds = [event["type"] for event in collector.events]
    assert kinds.count("exposure") == 4 and kinds.count("outcome") == 2
    exposed = {(e["unit_id"], e["variant_key"]) for e in collector.events if "variant_key" in e}
    assert ("qa", "control") in exposed and ("qa", "treatment") in exposed


def test_a_repeated_exposure_is_still_returned_with_its_variant() -> None:
    with _kafka_client(RecordingProducer()) as client:
        first = client.expose(EXPERIMENT, "user-1")
        again = client.expose(EXPERIMENT, "user-1")
    assert first is not None and again is not None
    assert again.variant_key == first.variant_key


def test_zero_disables_de_duplication() -> None:
    producer = RecordingProducer()
    with _kafka_client(producer, dedup_exposures=0) as client:
        _expose_twice_each(client)
    assert [topic.rsplit(".", 1)[1] for topic, _, _ in producer.events()].count("exposures") == 8


def test_the_least_recently_seen_exposure_is_forgotten_first() -> None:
    seen = ExposureDeduplicator(capacity=2)
    a, b, c = (("acme", "exp", unit, "control") for unit in "abc")
    assert seen.first_time(a) and seen.first_time(b)
    assert not seen.first_time(a)  # a is now the most recent
    assert seen.first_time(c)  # evicts b
    assert not seen.first_time(a)
    assert seen.first_time(b)
    assert len(seen) == 2


def test_http_delivery_validates_events_as_kafka_delivery_does() -> None:
    collector = _Collector()
    with _http_client(collector) as client:
        with pytest.raises(ValueError, match=r"(?m)^  event: should be letters"):
            client.track("user-1", "no spaces allowed")
        with pytest.raises(ValueError, match=r"(?m)^  variant_key: 'blue' is not a variant"):
            client.expose(EXPERIMENT, "user-1", variant="blue")
    assert collector.events == []


def test_http_delivery_reads_the_collector_and_key_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFTSTREAM_COLLECTOR_URL", "http://collector.test:8791/")
    monkeypatch.setenv("LIFTSTREAM_API_KEY", "lsk_k_s")
    with LiftstreamClient("acme", delivery="http") as client:
        assert isinstance(client.transport, HttpTransport)
        assert client.transport.url == "http://collector.test:8791/v1/events"


def test_http_delivery_without_a_collector_says_how_to_configure_one() -> None:
    with pytest.raises(PlatformUnavailableError, match="LIFTSTREAM_COLLECTOR_URL"):
        LiftstreamClient("acme", delivery="http", api_key="lsk_k_s")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delivery": "carrier-pigeon"}, "delivery"),
        ({"delivery": "http", "collector_url": "http://c.test"}, "api_key"),
        ({"delivery": "http", "collector_url": "c.test", "api_key": "k"}, "collector_url"),
        (
            {"delivery": "http", "collector_url": "http://c.test", "producer": RecordingProducer()},
            "producer",
        ),
        ({"dedup_exposures": -1}, "dedup_exposures"),
    ],
)
def test_bad_client_options_are_refused_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError, match=rf"(?m)^  {field}: "):
        LiftstreamClient("acme", bootstrap="unused:9092", **options)


def test_from_config_with_http_delivery_sends_with_the_same_ingest_key() -> None:
    snapshot = ConfigSnapshot(tenant_id="acme", revision=1, experiments=[])
    control = httpx.MockTransport(
        lambda request: httpx.Response(200, content=snapshot.model_dump_json().encode())
    )
    client = LiftstreamClient.from_config(
        "http://control.test",
        "lsk_ingest_key",
        transport=control,
        delivery="http",
        collector_url="http://collector.test",
    )
    with client:
        assert client.tenant_id == "acme"
        assert isinstance(client.transport, HttpTransport)
        assert client.transport._http.headers["authorization"] == "Bearer lsk_ingest_key"
