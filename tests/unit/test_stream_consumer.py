"""After a rebalance the worker rewinds partitions that have no committed offset."""

from __future__ import annotations

from pathlib import Path

from faust.types import TP

from liftstream.settings import Settings
from services.stream.app import create_app
from services.stream.consumer import StreamConsumer, rewind_targets

EXPOSURES_0 = TP("ns.exposures", 0)
EXPOSURES_1 = TP("ns.exposures", 1)
OUTCOMES_0 = TP("ns.outcomes", 0)
CHANGELOG_0 = TP("ns-stream-units-changelog", 0)


def is_changelog(tp: TP) -> bool:
    return tp.topic.endswith("-changelog")


def test_partitions_without_a_committed_offset_restart_from_their_start() -> None:
    committed = {EXPOSURES_0: None, EXPOSURES_1: 0, OUTCOMES_0: 57, CHANGELOG_0: None}
    # aiokafka itself only seeks OUTCOMES_0; the others would keep whatever position
    # the consumer reached while Faust was discarding records.
    assert rewind_targets(committed, is_changelog, reset_to_earliest=True) == {
        EXPOSURES_0: 0,
        EXPOSURES_1: 0,
    }


def test_without_earliest_reset_only_a_committed_zero_is_rewound() -> None:
    committed = {EXPOSURES_0: None, EXPOSURES_1: 0, OUTCOMES_0: 57}
    assert rewind_targets(committed, is_changelog, reset_to_earliest=False) == {EXPOSURES_1: 0}


def test_the_worker_consumes_with_the_rewinding_consumer(tmp_path: Path) -> None:
    settings = Settings(
        bootstrap="127.0.0.1:9", namespace="ns", partitions=2, home=tmp_path, results_url=""
    )
    app = create_app(settings)
    assert isinstance(app.consumer, StreamConsumer)
    assert app.conf.consumer_auto_offset_reset == "earliest"
