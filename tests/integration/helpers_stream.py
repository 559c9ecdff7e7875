"""Helpers for tests that run the stream worker against the real broker.

- ``synthetic_events`` / ``event_messages``: a reproducible event log (several tenants,
  experiments and event names, exclusions, outcomes before exposures, shuffled) and its
  Kafka messages; ``produce`` writes messages with kafka-python's default partitioner;
  ``mixed_messages`` mixes batch messages (JSON arrays of one partition's events) with
  single-event ones, and ``produce_placed`` sends those to their partitions.
- ``StreamWorker``: ``python -m services.stream`` as a subprocess (SIGTERM, then SIGKILL).
- ``AggregatesReader``: follows the aggregates topic, keeps the latest record per key (as
  compaction would) and sums the partials over partitions; ``wait_until_caught_up``
  returns once the progress marks reach the end offsets of the event topics.
- ``expected_aggregates``: the ground truth, computed here from raw events on purpose
  without any code of ``services.stream``.
- ``assert_matches_truth``: compare an ``AggregatesView`` with ``expected_aggregates``.
- ``read_dead_letters``: the dead-letter topic's records; ``rewind_consumer_group``.
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from liftstream.settings import Settings
from schemas.aggregates import (
    Aggregate,
    MetricStats,
    MetricSums,
    StreamProgress,
    VariantUnits,
    parse_aggregate,
)
from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.partitioning import partition_for

REPO_ROOT = Path(__file__).resolve().parents[2]

Key = tuple[str, ...]
UnitsView = dict[tuple[str, str, str], tuple[int, int]]
StatsView = dict[tuple[str, str, str, str, str], tuple[float, float]]


TENANTS = ("acme", "globex")
EXPERIMENTS = {"checkout": ("control", "treatment"), "banner": ("a", "b", "c")}
OUTCOME_EVENTS = ("purchase", "click", "signup")
EPOCH = datetime(2024, 5, 1, tzinfo=UTC)


def synthetic_events(seed: int, units_per_tenant: int = 200) -> list[ExposureEvent | OutcomeEvent]:
    """Distinct valid events in a shuffled log order (so outcomes often precede exposures).

    Units see one or both experiments, a few see two variants of one (excluded), some
    have outcomes only; outcome times start before the first exposure. Purchase values
    are multiples of 0.25, so every sum is exact in floating point.
    """
    rng = random.Random(seed)
    events: list[ExposureEvent | OutcomeEvent] = []
    for tenant in TENANTS:
        for number in range(units_per_tenant):
            unit = f"user-{number:04d}"
            start = EPOCH + timedelta(seconds=rng.randrange(86_400))
            for experiment, variants in EXPERIMENTS.items():
                if rng.random() > 0.7:
                    continue
                shown = [rng.choice(variants)]
                if rng.random() < 0.06:
                    shown.append(rng.choice([v for v in variants if v != shown[0]]))
                for variant in shown * rng.randint(1, 2):
                    events.append(
                        ExposureEvent(
                            tenant_id=tenant,
                            unit_id=unit,
                            timestamp=start + timedelta(seconds=rng.randrange(3_600)),
                            experiment_key=experiment,
                            variant_key=variant,
                        )
                    )
            for _ in range(rng.randint(0, 6)):
                name = rng.choice(OUTCOME_EVENTS)
                events.append(
                    OutcomeEvent(
                        tenant_id=tenant,
                        unit_id=unit,
                        timestamp=start + timedelta(seconds=rng.randrange(-1_800, 7_200)),
                        event=name,
                        value=rng.randrange(0, 400) / 4 if name == "purchase" else 1.0,
                    )
                )
    rng.shuffle(events)
    return events


def event_messages(
    settings: Settings, events: Iterable[ExposureEvent | OutcomeEvent]
) -> list[tuple[str, bytes | None, bytes]]:
    """``(topic, key, value)`` for each event, as an SDK or the collector would send it."""
    topics = settings.topics
    return [
        (
            topics.exposures if event.type == "exposure" else topics.outcomes,
            event.partition_key,
            event.to_json(),
        )
        for event in events
    ]


def produce(settings: Settings, messages: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send ``(topic, key, value)`` messages in order; return how many were sent."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5)
    count = 0
    try:
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return count


#: ``(topic, partition or None for the key's, key, value)`` of a message to produce.
PlacedMessage = tuple[str, int | None, bytes | None, bytes]


def mixed_messages(
    settings: Settings,
    events: Iterable[ExposureEvent | OutcomeEvent],
    rng: random.Random,
    batched_share: float = 0.7,
    max_batch: int = 60,
) -> list[PlacedMessage]:
    """The events as a mix of batch messages (JSON arrays of one partition's events, sent
    to that partition, keyed or not) and single-event messages keyed ``tenant:unit``; the
    messages in the events' order (a batch at the place of its first event)."""
    topics = settings.topics
    open_batches: dict[tuple[str, int], list[bytes]] = {}
    placed: list[PlacedMessage | list[bytes]] = []
    for event in events:
        topic = topics.exposures if event.type == "exposure" else topics.outcomes
        if rng.random() >= batched_share:
            placed.append((topic, None, event.partition_key, event.to_json()))
            continue
        partition = partition_for(event.partition_key, settings.partitions)
        batch = open_batches.get((topic, partition))
        if batch is None or len(batch) >= rng.randint(1, max_batch):
            batch = open_batches[(topic, partition)] = []
            placed.append((topic, partition, None, b""))  # filled below
            placed.append(batch)
        batch.append(event.to_json())
    messages: list[PlacedMessage] = []
    for index, item in enumerate(placed):
        if isinstance(item, list):
            topic, partition, _, _ = placed[index - 1]  # type: ignore[misc]
            key = None if rng.random() < 0.5 else b"any key"
            messages[-1] = (topic, partition, key, b"[" + b",".join(item) + b"]")
        else:
            messages.append(item)
    return messages


def produce_placed(settings: Settings, messages: Iterable[PlacedMessage]) -> int:
    """Send messages to their partitions (else the key's), in order; return the count."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5)
    count = 0
    try:
        for topic, partition, key, value in messages:
            producer.send(topic, key=key, value=value, partition=partition)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return count


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {
            (tp.topic, tp.partition): offset
            for tp, offset in consumer.end_offsets(partitions).items()
        }
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every ``(key, value)`` currently on ``topic``, partition by partition."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((record.key, record.value) for record in batch)
        return records
    finally:
        consumer.close()


def group_lag(settings: Settings, group_id: str, topics: Iterable[str]) -> dict[str, int]:
    """Per topic, the messages between ``group_id``'s committed offsets and the end."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap)
    try:
        committed = admin.list_group_offsets(group_id)[group_id]
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in range(settings.partitions)
        ]
        ends = consumer.end_offsets(partitions)
        lag: dict[str, int] = defaultdict(int)
        for tp in partitions:
            at = committed.get(tp)
            lag[tp.topic] += ends[tp] - (at.offset if at is not None else 0)
        return dict(lag)
    finally:
        consumer.close()
        admin.close()


def rewind_consumer_group(settings: Settings, group_id: str, topics: Iterable[str]) -> None:
    """Forget the committed offsets of ``group_id`` on ``topics`` (group must be idle).

    Simulates a worker that crashed before committing anything: its successor starts
    from the beginning of the log (auto offset reset ``earliest``) and must process it
    all again on top of the state its changelog already holds.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in range(settings.partitions)
        ]
        admin.delete_group_offsets(group_id, partitions)
    finally:
        admin.close()


def read_dead_letters(settings: Settings) -> list[tuple[bytes | None, DeadLetter]]:
    return [
        (key, DeadLetter.model_validate_json(value))
        for key, value in read_topic(settings, settings.topics.deadletter)
    ]


_SUMS = ("n", "sum_x", "sum_xx", "sum_y", "sum_yy", "sum_xy", "sum_c", "sum_cc", "sum_xc")


@dataclass
class AggregatesView:
    """The aggregates topic summed over source partitions."""

    units: UnitsView
    stats: StatsView
    progress: dict[int, dict[str, int]]
    #: (tenant, experiment, variant, metric) -> (definition hash, n, Σx, Σx², Σy, Σy², Σxy,
    #: Σc, Σc², Σxc) of the defined metrics the stream keeps live.
    sums: dict[tuple[str, str, str, str], tuple[Any, ...]] = field(default_factory=dict)


@dataclass
class AggregatesReader:
    """Follows the aggregates topic from its beginning."""

    settings: Settings
    latest: dict[bytes, Aggregate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False
        )
        self._partition = TopicPartition(self.settings.topics.aggregates, 0)
        self._consumer.assign([self._partition])
        self._consumer.seek_to_beginning(self._partition)

    def close(self) -> None:
        self._consumer.close()

    def poll(self) -> None:
        for batch in self._consumer.poll(timeout_ms=200, max_records=5000).values():
            for record in batch:
                self.latest[record.key] = parse_aggregate(record.value)

    def view(self) -> AggregatesView:
        units: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        stats: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        progress: dict[int, dict[str, int]] = {}
        sums: dict[tuple[str, str, str, str], list[Any]] = {}
        for record in self.latest.values():
            if isinstance(record, VariantUnits):
                pair = units[(record.tenant_id, record.experiment_key, record.variant_key)]
                pair[0] += record.units
                pair[1] += record.excluded_units
            elif isinstance(record, MetricStats):
                key = (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.event,
                    record.aggregation.value,
                )
                stats[key][0] += record.sum
                stats[key][1] += record.sum_sq
            elif isinstance(record, MetricSums):
                key = (record.tenant_id, record.experiment_key, record.variant_key, record.metric)
                numbers = [getattr(record, name) for name in _SUMS]
                if key not in sums or sums[key][0] != record.definition_hash:
                    sums[key] = [record.definition_hash, *([0] * len(_SUMS))]
                for index, number in enumerate(numbers, start=1):
                    sums[key][index] += number
            elif isinstance(record, StreamProgress):
                progress[record.source_partition] = record.next_offsets
        return AggregatesView(
            units={key: (a, b) for key, (a, b) in units.items()},
            stats={key: (a, b) for key, (a, b) in stats.items()},
            progress=progress,
            sums={key: tuple(values) for key, values in sums.items()},
        )

    def caught_up(self, ends: Mapping[tuple[str, int], int]) -> bool:
        progress = self.view().progress
        return all(
            progress.get(partition, {}).get(topic, 0) >= end
            for (topic, partition), end in ends.items()
        )

    def wait_until_caught_up(
        self, worker: StreamWorker | None = None, timeout: float = 90.0
    ) -> AggregatesView:
        """Poll until progress covers the current end offsets of the event topics."""
        topics = self.settings.topics
        ends = end_offsets(self.settings, [topics.exposures, topics.outcomes])
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.caught_up(ends):
                return self.view()
            if worker is not None and not worker.alive():
                raise AssertionError(f"stream worker exited:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                tail = worker.log_tail() if worker is not None else ""
                raise TimeoutError(
                    f"progress {self.view().progress} did not reach {ends} in {timeout}s\n{tail}"
                )


class StreamWorker:
    """``python -m services.stream`` with the current environment (set by the fixture)."""

    def __init__(
        self, log_path: Path, publish_interval: float = 0.2, snapshot_interval: float = 30.0
    ) -> None:
        self.log_path = log_path
        env = dict(os.environ)
        env["LIFTSTREAM_STREAM_PUBLISH_INTERVAL"] = str(publish_interval)
        env["LIFTSTREAM_STREAM_SNAPSHOT_INTERVAL"] = str(snapshot_interval)
        env["PYTHONUNBUFFERED"] = "1"
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.stream"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def owned_partitions(self) -> set[int] | None:
        """Partitions the worker last logged owning (None before its first assignment)."""
        owned = re.findall(r"owning partitions \[([0-9, ]*)\]", self.log_path.read_text())
        if not owned:
            return None
        return {int(p) for p in owned[-1].split(",") if p.strip()}

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> StreamWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class _UnitTruth:
    exposures: dict[str, list[tuple[datetime, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    outcomes: list[tuple[str, datetime, float]] = field(default_factory=list)


def expected_aggregates(
    events: Iterable[ExposureEvent | OutcomeEvent],
) -> tuple[UnitsView, StatsView]:
    """Ground truth from raw (valid) events, whatever order they are given in."""
    unique = {event.event_id: event for event in events}
    units: dict[tuple[str, str], _UnitTruth] = defaultdict(_UnitTruth)
    for event in unique.values():
        truth = units[(event.tenant_id, event.unit_id)]
        moment = event.timestamp
        if isinstance(event, ExposureEvent):
            truth.exposures[event.experiment_key].append((moment, event.variant_key))
        else:
            truth.outcomes.append((event.event, moment, event.value))
    unit_totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    stats: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (tenant, _unit), truth in units.items():
        for experiment, seen in truth.exposures.items():
            first_moment, first_variant = min(seen)
            if len({variant for _, variant in seen}) > 1:
                unit_totals[(tenant, experiment, first_variant)][1] += 1
                continue
            unit_totals[(tenant, experiment, first_variant)][0] += 1
            per_event: dict[str, list[float]] = defaultdict(list)
            for name, moment, value in truth.outcomes:
                if moment >= first_moment:
                    per_event[name].append(value)
            for name, values in per_event.items():
                for aggregation, x in (
                    ("conversion", 1.0),
                    ("count", float(len(values))),
                    ("sum", math.fsum(values)),
                ):
                    pair = stats[(tenant, experiment, first_variant, name, aggregation)]
                    pair[0] += x
                    pair[1] += x * x
    return (
        {key: (a, b) for key, (a, b) in unit_totals.items()},
        {key: (a, b) for key, (a, b) in stats.items()},
    )


def _nonzero(pairs: Mapping[Key, tuple[float, float]]) -> dict[Key, tuple[float, float]]:
    # A variant whose only unit became excluded is published as zeros; a reader treats a
    # missing record as zero, so both sides drop them.
    return {key: pair for key, pair in pairs.items() if pair != (0, 0)}


def assert_matches_truth(view: AggregatesView, events: list[ExposureEvent | OutcomeEvent]) -> None:
    """Units and sums exactly equal to the ground truth, Σx² to 1e-9 relative."""
    expected_units, expected_stats = expected_aggregates(events)
    assert _nonzero(view.units) == _nonzero(expected_units)
    got, want = _nonzero(view.stats), _nonzero(expected_stats)
    assert got.keys() == want.keys()
    for key, (total, total_sq) in want.items():
        assert got[key][0] == total, key
        assert got[key][1] == pytest.approx(total_sq, rel=1e-9), key
    # The data set must exercise what it claims to.
    assert any(excluded for _, excluded in expected_units.values())
    assert {key[4] for key in want} == {"conversion", "count", "sum"}
