"""Two stream workers share the partitions, then one leaves and the other takes them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftstream.settings import Settings
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    event_messages,
    produce,
    synthetic_events,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ALL_PARTITIONS = {0, 1, 2, 3}


def wait_for_split(first: StreamWorker, second: StreamWorker, timeout: float = 90.0) -> None:

    def shared() -> tuple[set[int], set[int]] | None:
        owned = (first.owned_partitions(), second.owned_partitions())
        assert first.alive() and second.alive()
        if owned[1] and owned[0] is not None and owned[0] != ALL_PARTITIONS:
            return owned[0], owned[1]
        return None

    mine, yours = wait_until(
        shared,
        timeout=timeout,
        what=lambda: (
            f"partitions not shared: {first.owned_partitions()}, {second.owned_partitions()}"
        ),
        interval=0.3,
    )
    assert not mine & yours
    assert mine | yours == ALL_PARTITIONS


def test_two_workers_split_the_partitions_and_hand_them_back(
    platform_settings: Settings, tmp_path: Path, reader: AggregatesReader
) -> None:
    events = synthetic_events(seed=5, units_per_tenant=120)
    half = len(events) // 2
    produce(platform_settings, event_messages(platform_settings, events[:half]))
    with StreamWorker(tmp_path / "worker-a.log") as first:
        reader.wait_until_caught_up(first)
        with StreamWorker(tmp_path / "worker-b.log") as second:
            wait_for_split(first, second)
            # The second worker recovers its partitions' unit states from the changelog.
            produce(platform_settings, event_messages(platform_settings, events[half:]))
            assert_matches_truth(reader.wait_until_caught_up(second), events)
            assert second.stop() == 0

        # Units already known get more events after the hand-back.
        more = synthetic_events(seed=6, units_per_tenant=30)
        produce(platform_settings, event_messages(platform_settings, more))
        assert_matches_truth(reader.wait_until_caught_up(first), events + more)
        assert first.owned_partitions() == ALL_PARTITIONS
