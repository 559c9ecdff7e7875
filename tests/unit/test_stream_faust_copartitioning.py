"""The Faust worker refuses an assignment that splits a partition number's exposures and
outcomes between workers (a unit's events must meet in one worker)."""

from __future__ import annotations

import pytest
from faust.types import TP

from services.stream.faust_worker import _check_copartitioned

SOURCES = ("ns.exposures", "ns.outcomes")


def test_the_same_partition_numbers_of_both_event_topics_are_accepted() -> None:
    assigned = [TP(topic, p) for topic in SOURCES for p in (0, 3)]
    _check_copartitioned([*assigned, TP("ns.other", 1)], SOURCES)
    _check_copartitioned([], SOURCES)  # more workers than partitions: nothing to own


def test_a_round_robin_split_is_refused_naming_the_partitions() -> None:
    # What aiokafka's round-robin assignor gives the first of 3 workers on 4 partitions.
    assigned = [TP("ns.exposures", 0), TP("ns.exposures", 3), TP("ns.outcomes", 2)]
    with pytest.raises(RuntimeError, match="not co-partitioned") as refused:
        _check_copartitioned(assigned, SOURCES)
    assert "'ns.exposures': [0, 3]" in str(refused.value)
    assert "'ns.outcomes': [2]" in str(refused.value)
