"""Events written by a transactional producer (confluent-kafka with a ``transactional.id``)
beside another tenant's plain producer on the same partitions: the transaction markers
leave holes in the partitions' offsets and an aborted transaction's records stay in the
log. Both stream engines keep aggregating every tenant (no partition stalls on a hole),
count exactly the committed events, and resume exactly after a SIGKILL whose last
snapshot ends just before a hole; the results service's loader stores exactly the
committed events."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from analytics.store import AnalyticsStore
from liftstream.settings import Settings
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.partitioning import partition_for
from services.results.loader import Loader
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    end_offsets,
    group_lag,
    mixed_messages,
    produce_placed,
    synthetic_events,
)

pytestmark = pytest.mark.integration

Event = ExposureEvent | OutcomeEvent
#: Tenant A writes in transactions, tenant B with a plain producer.
TENANT_A, TENANT_B = "acme", "globex"


class _TransactionalWriter:
    """A confluent-kafka producer with a ``transactional.id``: each call of ``write`` is
    one transaction, committed or aborted."""

    def __init__(self, settings: Settings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap,
                "transactional.id": f"{settings.namespace}-tx",
                "linger.ms": 5,
            }
        )
        self._producer.init_transactions(30)

    def write(self, events: list[Event], *, commit: bool) -> None:
        messages = mixed_messages(self._settings, events, self._rng)
        self._producer.begin_transaction()
        for topic, partition, key, value in messages:
            if partition is None:  # confluent-kafka's own partitioner is not Kafka's default
                assert key is not None
                partition = partition_for(key, self._settings.partitions)
            self._producer.produce(topic, value=value, key=key, partition=partition)
        self._producer.flush(30)
        if commit:
            self._producer.commit_transaction(30)
        else:
            self._producer.abort_transaction(30)


def _aborted(events: list[Event]) -> list[Event]:
    """Events of tenant A that must never count: new units, and outcomes of A's units
    with other values (other event ids)."""
    ghosts: list[Event] = [e.model_copy(update={"unit_id": f"aborted-{e.unit_id}"}) for e in events]
    extra: list[Event] = [
        OutcomeEvent(
            tenant_id=e.tenant_id,
            unit_id=e.unit_id,
            timestamp=e.timestamp,
            event="purchase",
            value=1000.0,
        )
        for e in events
        if isinstance(e, ExposureEvent)
    ]
    return ghosts + extra


def _tails(settings: Settings, events: list[Event]) -> tuple[list[Event], list[Event]]:
    """One of ``events`` per event topic and partition (sent last, so that every partition
    ends on a data record, which the progress marks then reach), and the rest."""
    topics = settings.topics
    tails: dict[tuple[str, int], Event] = {}
    for event in events:
        topic = topics.exposures if event.type == "exposure" else topics.outcomes
        tails.setdefault((topic, partition_for(event.partition_key, settings.partitions)), event)
    assert len(tails) == 2 * settings.partitions
    chosen = {id(event) for event in tails.values()}
    return list(tails.values()), [e for e in events if id(e) not in chosen]


def _plain(settings: Settings, events: list[Event], rng: random.Random) -> None:
    produce_placed(settings, mixed_messages(settings, events, rng))


def _chunks(events: list[Event], count: int) -> list[list[Event]]:
    return [events[index::count] for index in range(count)]


def _write_phase(
    settings: Settings,
    writer: _TransactionalWriter,
    seed: int,
    *,
    abort_first: bool,
    end_in_transaction: bool = False,
) -> list[Event]:
    """Committed and aborted transactions of A interleaved with B's plain messages on the
    same partitions, every partition ending with a plain B message (then, with
    ``end_in_transaction``, one more committed transaction: partitions end on a marker);
    the committed events."""
    rng = random.Random(seed)
    events = synthetic_events(seed=seed, units_per_tenant=40)
    a_events = [e for e in events if e.tenant_id == TENANT_A]
    b_events = [e for e in events if e.tenant_id == TENANT_B]
    tails, b_events = _tails(settings, b_events)
    aborted = _aborted(rng.sample(a_events, k=len(a_events) // 4))
    a_chunks, b_chunks = _chunks(a_events, 4), _chunks(b_events, 4)
    if abort_first:
        # Right after the last snapshot's offsets: the states' next offset is a hole.
        writer.write(aborted, commit=False)
    last = a_chunks.pop() if end_in_transaction else []
    for index, (a_chunk, b_chunk) in enumerate(zip(a_chunks, b_chunks, strict=False)):
        writer.write(a_chunk, commit=True)
        if index == 1 and not abort_first:
            writer.write(aborted, commit=False)
        _plain(settings, b_chunk, rng)
    _plain(settings, [e for chunk in b_chunks[len(a_chunks) :] for e in chunk], rng)
    _plain(settings, tails, rng)
    if last:
        writer.write(last, commit=True)
    return a_events + b_events + tails


def _wait_for_snapshot(settings: Settings, group_id: str, timeout: float = 30.0) -> None:
    """Until the worker's committed offsets (written after each snapshot) reach the end."""
    topics = [settings.topics.exposures, settings.topics.outcomes]
    deadline = time.monotonic() + timeout
    while group_lag(settings, group_id, topics) != dict.fromkeys(topics, 0):
        assert time.monotonic() < deadline, "no snapshot covered the log's end"
        time.sleep(0.3)


@pytest.mark.parametrize("engine", ["faust", "aiokafka"])
def test_transactions_neither_wedge_a_partition_nor_count_aborted_events(
    engine: str,
    platform_settings: Settings,
    reader: AggregatesReader,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFTSTREAM_STREAM_ENGINE", engine)
    writer = _TransactionalWriter(platform_settings, random.Random(3))
    committed = _write_phase(platform_settings, writer, seed=41, abort_first=False)
    group_id = f"{platform_settings.namespace}-stream"

    worker = StreamWorker(tmp_path / "worker.log", snapshot_interval=1.0)
    try:
        view = reader.wait_until_caught_up(worker, timeout=60)
        assert_matches_truth(view, committed)
        _wait_for_snapshot(platform_settings, group_id)
        worker.process.kill()  # SIGKILL: no last snapshot, the committed one stands
        worker.process.wait(10)
    finally:
        worker.stop()

    # The killed worker's snapshot ends where the next writes start: with an aborted
    # transaction, so its successor's first offset is a hole. The log then ends with a
    # committed transaction: progress reaches the end offsets past its markers.
    committed += _write_phase(
        platform_settings, writer, seed=42, abort_first=True, end_in_transaction=True
    )
    with StreamWorker(tmp_path / "worker2.log", snapshot_interval=1.0) as worker:
        view = reader.wait_until_caught_up(worker, timeout=60)
        assert_matches_truth(view, committed)
        assert worker.stop() == 0


def test_the_loader_stores_exactly_the_committed_events(
    platform_settings: Settings, tmp_path: Path
) -> None:
    writer = _TransactionalWriter(platform_settings, random.Random(5))
    committed = _write_phase(platform_settings, writer, seed=43, abort_first=True)
    committed += _write_phase(platform_settings, writer, seed=44, abort_first=False)
    topics = platform_settings.topics
    ends = end_offsets(platform_settings, [topics.exposures, topics.outcomes])

    store = AnalyticsStore(tmp_path / "results.duckdb")
    loader = Loader(store, platform_settings.bootstrap, topics)
    loader.start()
    try:
        deadline = time.monotonic() + 30
        while any(store.loaded_offsets().get(place, 0) < end for place, end in ends.items()):
            assert loader.health().error is None, loader.health().error
            assert time.monotonic() < deadline, (store.loaded_offsets(), ends)
            time.sleep(0.2)
    finally:
        loader.stop()
    with store.cursor() as cursor:
        exposures = cursor.execute(
            "SELECT tenant_id, unit_id, experiment_key, variant_key FROM exposures"
        ).fetchall()
        outcomes = cursor.execute(
            "SELECT tenant_id, unit_id, event, value FROM outcomes"
        ).fetchall()
    store.close()
    assert sorted(exposures) == sorted(
        (e.tenant_id, e.unit_id, e.experiment_key, e.variant_key)
        for e in committed
        if isinstance(e, ExposureEvent)
    )
    assert sorted(outcomes) == sorted(
        (e.tenant_id, e.unit_id, e.event, e.value) for e in committed if isinstance(e, OutcomeEvent)
    )
