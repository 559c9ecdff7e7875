"""A topic holding batch messages and single-event messages aggregates exactly like the
same events sent one by one; a bad element of a batch is its own dead letter."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftstream.settings import Settings
from schemas.events import OutcomeEvent
from schemas.partitioning import partition_for
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    mixed_messages,
    produce_placed,
    read_dead_letters,
    synthetic_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def reader(platform_settings: Settings) -> Iterator[AggregatesReader]:
    reader = AggregatesReader(platform_settings)
    yield reader
    reader.close()


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
