"""The stream worker against the real broker: its aggregates equal the raw-event truth."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liftstream.settings import Settings
from schemas.events import OutcomeEvent
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    event_messages,
    group_lag,
    produce,
    read_dead_letters,
    rewind_consumer_group,
    synthetic_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def start_worker(
    platform_settings: Settings, tmp_path: Path
) -> Iterator[Callable[[], StreamWorker]]:
    """Starts ``python -m services.stream`` workers; stops any still running at the end."""
    workers: list[StreamWorker] = []

    def start() -> StreamWorker:
        workers.append(StreamWorker(tmp_path / f"stream-worker-{len(workers)}.log"))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


def malformed_messages(settings: Settings, sample: OutcomeEvent) -> dict[bytes, tuple[str, str]]:
    """Refusable messages -> (topic, field the dead letter must name)."""
    body = json.loads(sample.to_json())
    envelope = {name: body[name] for name in ("event_id", "tenant_id", "unit_id", "timestamp")}
    missing_variant = {**envelope, "type": "exposure", "experiment_key": "checkout"}
    topics = settings.topics
    return {
        b'{"type": "outcome", "tenant_id": "acme", "unit_id"': (topics.outcomes, "JSON"),
        json.dumps(missing_variant).encode(): (topics.exposures, "variant_key"),
        json.dumps({**body, "value": "a lot"}).encode(): (topics.outcomes, "value"),
        json.dumps({**body, "type": "impression"}).encode(): (topics.outcomes, "type"),
    }


def test_worker_aggregates_equal_the_ground_truth_and_refuses_bad_messages(
    platform_settings: Settings,
    start_worker: Callable[[], StreamWorker],
    reader: AggregatesReader,
) -> None:
    events = synthetic_events(seed=11, units_per_tenant=200)
    rng = random.Random(5)
    resent = rng.sample(events, k=len(events) // 30)
    messages = event_messages(platform_settings, events + resent)
    sample = next(e for e in events if isinstance(e, OutcomeEvent))
    bad = malformed_messages(platform_settings, sample)
    for value, (topic, _) in bad.items():
        messages.insert(rng.randrange(len(messages)), (topic, sample.partition_key, value))
    assert len(messages) > 2000
    produce(platform_settings, messages)

    worker = start_worker()
    view = reader.wait_until_caught_up(worker, timeout=120)

    assert_matches_truth(view, events)
    letters = {letter.payload: letter for _, letter in read_dead_letters(platform_settings)}
    assert letters.keys() == {value.decode() for value in bad}
    for value, (topic, field) in bad.items():
        letter = letters[value.decode()]
        assert (letter.stage, letter.source_topic) == ("stream", topic)
        assert field in letter.reason, letter.reason
    assert worker.alive()
    assert worker.stop() == 0


def test_restarted_worker_recovers_its_state_and_ignores_reprocessed_events(
    platform_settings: Settings,
    start_worker: Callable[[], StreamWorker],
    reader: AggregatesReader,
) -> None:
    events = synthetic_events(seed=23, units_per_tenant=120)
    half = len(events) // 2
    before, after = events[:half], events[half:]
    produce(platform_settings, event_messages(platform_settings, before))
    first = start_worker()
    assert_matches_truth(reader.wait_until_caught_up(first, timeout=120), before)
    assert first.stop() == 0
    # The offsets its last snapshot covers are committed: the group shows no lag.
    topics = platform_settings.topics
    group = f"{platform_settings.namespace}-stream"
    assert group_lag(platform_settings, group, [topics.exposures, topics.outcomes]) == {
        topics.exposures: 0,
        topics.outcomes: 0,
    }

    # As if the worker had crashed before committing: its successor re-reads the whole
    # log on top of the recovered state. Then comes the rest of the log, plus re-sends.
    rewind_consumer_group(platform_settings, group, [topics.exposures, topics.outcomes])
    resent = random.Random(3).sample(before, k=100)
    produce(platform_settings, event_messages(platform_settings, after + resent))
    second = start_worker()
    assert_matches_truth(reader.wait_until_caught_up(second, timeout=120), events)
    assert "rebuilt from 0 unit states" not in second.log_path.read_text()
