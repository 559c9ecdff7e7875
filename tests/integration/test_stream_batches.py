"""A topic holding batch messages and single-event messages aggregates exactly like the
same events sent one by one, whichever producer wrote them (the SDK, the collector, a raw
kafka-python producer); a bad element of a batch is its own dead letter."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from liftstream.client import LiftstreamClient
from liftstream.settings import Settings
from schemas import Experiment
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.partitioning import partition_for
from tests.integration.helpers_collector import CollectorProcess, read_topic
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_stream import (
    EXPERIMENTS,
    TENANTS,
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    mixed_messages,
    produce_placed,
    read_dead_letters,
    synthetic_events,
)

pytestmark = pytest.mark.integration


def test_batched_and_single_messages_aggregate_like_the_events_one_by_one(
    platform_settings: Settings, reader: AggregatesReader, tmp_path: Path
) -> None:
    events = synthetic_events(seed=31, units_per_tenant=200)
    rng = random.Random(8)
    resent = rng.sample(events, k=len(events) // 20)
    messages = mixed_messages(platform_settings, events + resent, rng)
    batches = [m for m in messages if m[3].startswith(b"[")]
    assert len(batches) > 50 and len(messages) - len(batches) > 300

    # One batch with a bad element in the middle: the others of that batch still count.
    outcome = next(e for e in events if isinstance(e, OutcomeEvent))
    partition = partition_for(outcome.partition_key, platform_settings.partitions)
    bad = json.dumps({**json.loads(outcome.to_json()), "value": "a lot"}).encode()
    extra = OutcomeEvent(
        tenant_id=outcome.tenant_id,
        unit_id=outcome.unit_id,
        timestamp=outcome.timestamp,
        event="signup",
    )
    topic = platform_settings.topics.outcomes
    messages.append((topic, partition, None, b"[" + extra.to_json() + b"," + bad + b"]"))

    produce_placed(platform_settings, messages)
    with StreamWorker(tmp_path / "worker.log") as worker:
        view = reader.wait_until_caught_up(worker, timeout=120)
        assert_matches_truth(view, [*events, extra])
        assert worker.stop() == 0

    letters = [letter for _, letter in read_dead_letters(platform_settings)]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.source_topic, letter.source_partition, letter.batch_index) == (
        topic,
        partition,
        1,
    )
    assert [error.field for error in letter.errors] == ["value"]
    assert json.loads(letter.payload) == json.loads(bad)


def test_events_from_the_sdk_the_collector_and_a_raw_producer_aggregate_as_one_log(
    platform_settings: Settings, reader: AggregatesReader, tmp_path: Path
) -> None:
    """One log, three producers: the SDK (batches from its background thread), the
    collector (a batch message per partition of each request) and a raw kafka-python
    producer (single-event messages and batches); the worker's figures equal the truth
    of every event stored, as if each had been sent alone."""
    events = synthetic_events(seed=41, units_per_tenant=80)
    raw = events[0::3]
    through_sdk = events[1::3]
    through_collector = events[2::3]
    produce_placed(platform_settings, mixed_messages(platform_settings, raw, random.Random(2)))

    sent: list[ExposureEvent | OutcomeEvent] = list(raw)
    definitions = {
        name: Experiment.model_validate(
            {
                "key": name,
                "variants": [
                    {"key": v, "weight": 100 // len(variants) + (i < 100 % len(variants))}
                    for i, v in enumerate(variants)
                ],
                "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
            }
        )
        for name, variants in EXPERIMENTS.items()
    }
    for tenant in TENANTS:
        with LiftstreamClient(tenant, dedup_exposures=0) as client:
            for event in through_sdk:
                if event.tenant_id != tenant:
                    continue
                if isinstance(event, ExposureEvent):
                    exposure = client.expose(
                        definitions[event.experiment_key],
                        event.unit_id,
                        variant=event.variant_key,
                        timestamp=event.timestamp,
                    )
                    assert exposure is not None
                    sent.append(exposure.to_model())
                else:
                    outcome = client.track(
                        event.unit_id, event.event, event.value, timestamp=event.timestamp
                    )
                    sent.append(outcome.to_model())

    old_events_allowed = {"LIFTSTREAM_COLLECTOR_MAX_PAST_S": str(10 * 365 * 86_400)}
    keys = {
        tenant: create_tenant(platform_settings.bootstrap, platform_settings.topics.control, tenant)
        for tenant in TENANTS
    }
    with CollectorProcess(tmp_path / "collector.log", old_events_allowed) as collector:
        for tenant in TENANTS:
            collector.wait_until_key_known(keys[tenant]["ingest"])
            mine = [e for e in through_collector if e.tenant_id == tenant]
            for start in range(0, len(mine), 300):
                chunk = mine[start : start + 300]
                body = {"events": [json.loads(e.to_json()) for e in chunk]}
                answer = collector.post(body, keys[tenant]["ingest"])
                assert answer.status_code == 202, answer.text
            sent.extend(mine)

    # Every form is on the topics: single-event messages and batches.
    values = [
        value
        for topic in (platform_settings.topics.exposures, platform_settings.topics.outcomes)
        for _, value in read_topic(platform_settings.bootstrap, topic)
    ]
    assert any(v.startswith(b"[") for v in values) and any(v.startswith(b"{") for v in values)

    with StreamWorker(tmp_path / "worker.log") as worker:
        view = reader.wait_until_caught_up(worker, timeout=120)
        assert_matches_truth(view, sent)
        assert worker.stop() == 0
    assert read_dead_letters(platform_settings) == []
