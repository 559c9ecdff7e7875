"""The client's events land on the namespace topics, keyed ``tenant:unit``, co-partitioned.

The expected partition is computed with aiokafka's partitioner (what the stream worker's
producers use), independently of kafka-python's, which the SDK sends with.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaConsumer, TopicPartition

from liftstream.client import LiftstreamClient
from liftstream.events import Exposure, Outcome
from liftstream.settings import Settings
from schemas import Experiment
from schemas.events import parse_event_batch

pytestmark = pytest.mark.integration

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout-button",
        "traffic": 60,
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
    }
)

Received = dict[str, list[tuple[int, bytes | None, bytes]]]


def _read_all(settings: Settings, topics: list[str]) -> Received:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        received: Received = defaultdict(list)
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, batch in consumer.poll(timeout_ms=2000).items():
                received[tp.topic].extend((tp.partition, r.key, r.value) for r in batch)
        return received
    finally:
        consumer.close()


def test_exposures_and_outcomes_land_keyed_and_co_partitioned(
    platform_settings: Settings,
) -> None:
    topics = platform_settings.topics
    units = [f"user-{index}" for index in range(40)]
    exposures: list[Exposure] = []
    outcomes: list[Outcome] = []
    with LiftstreamClient("acme") as client:
        for unit in units:
            exposure = client.expose(EXPERIMENT, unit, attributes={"plan": "pro"})
            if exposure is not None:
                exposures.append(exposure)
            outcomes.append(client.track(unit, "purchase", value=12.5))
    assert 10 < len(exposures) < 40, "60% traffic leaves some units out"

    received = _read_all(platform_settings, [topics.exposures, topics.outcomes])
    partitioner = DefaultPartitioner()
    all_partitions = list(range(platform_settings.partitions))
    partition_of_unit: dict[str, set[int]] = defaultdict(set)
    for topic, sent in ((topics.exposures, exposures), (topics.outcomes, outcomes)):
        by_id = {event.event_id: event.to_model() for event in sent}
        assert len(received[topic]) < len(sent), "events travel in batches"
        for partition, _key, value in received[topic]:
            for event in parse_event_batch(value):
                assert by_id.pop(str(event.event_id)) == event
                # The partition kafka-python's (Kafka's default) partitioner gives the key,
                # as if the event had been sent alone keyed tenant:unit.
                key = f"acme:{event.unit_id}".encode()
                assert partition == partitioner(key, all_partitions, all_partitions)
                partition_of_unit[event.unit_id].add(partition)
        assert by_id == {}
    assert all(len(partitions) == 1 for partitions in partition_of_unit.values())
    assert len({p for ps in partition_of_unit.values() for p in ps}) > 1, "keys spread out"


def test_a_unit_s_events_keep_their_order(platform_settings: Settings) -> None:
    with LiftstreamClient("acme") as client:
        sent = [client.track("user-1", "page_view", value=float(i)) for i in range(200)]
    received = _read_all(platform_settings, [platform_settings.topics.outcomes])
    values = [
        event
        for _p, _k, value in received[platform_settings.topics.outcomes]
        for event in parse_event_batch(value)
    ]
    assert values == [event.to_model() for event in sent]


def test_events_still_queued_when_the_process_exits_are_delivered(
    platform_settings: Settings,
) -> None:
    program = (
        "from liftstream.client import LiftstreamClient\n"
        "client = LiftstreamClient('acme')\n"
        "for i in range(500):\n"
        "    client.track(f'user-{i}', 'purchase')\n"
        "# neither flush nor close: the interpreter's exit sends what is queued\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    received = _read_all(platform_settings, [platform_settings.topics.outcomes])
    units = {
        event.unit_id
        for _p, _k, value in received[platform_settings.topics.outcomes]
        for event in parse_event_batch(value)
    }
    assert units == {f"user-{i}" for i in range(500)}
