"""The sink's delivery rules with scripted librdkafka producers (the real broker:
tests/integration/test_collector_sink.py): a request is answered only once every record
is acknowledged; which failures replace the producer, which are retried, which are an
outage (503) and which are the records' own fault (422)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.partitioning import partition_for
from services.collector.sink import (
    BATCH_MESSAGE_BYTES,
    KafkaSink,
    RecordsRefused,
    SinkUnavailable,
    as_batch_messages,
)

HANG = "hang"


class _Topic:
    def __init__(self, partitions: int) -> None:
        self.partitions = dict.fromkeys(range(partitions))
        self.error = None


class _Metadata:
    def __init__(self, partitions: int) -> None:
        self.topics = {"events": _Topic(partitions), "letters": _Topic(partitions)}


class ScriptedProducer:
    """librdkafka's producer as the sink uses it. Each produced message gets the next
    outcome of ``script`` (None = acknowledged, a KafkaError = that delivery error,
    ``HANG`` = never reported, ``BufferError`` = refused at once: the queue is full); the
    reports are served by ``poll``, in the sink's delivery thread, as librdkafka's are."""

    def __init__(self, script: list[Any], partitions: int = 4) -> None:
        self.script = script
        self.partitions = partitions
        self.produced: list[tuple[str, bytes, bytes | None, int | None]] = []
        self.closed = threading.Event()
        self._reports: list[tuple[Any, KafkaError | None]] = []
        self._lock = threading.Lock()
        self.hanging = 0

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        on_delivery: Any = None,
    ) -> None:
        outcome = self.script.pop(0) if self.script else None
        if outcome is BufferError:
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value, key, partition))
        if isinstance(outcome, str):  # HANG (a KafkaError cannot be compared with a str)
            self.hanging += 1
            return
        with self._lock:
            self._reports.append((on_delivery, outcome))

    def poll(self, timeout: float) -> int:
        with self._lock:
            reports, self._reports = self._reports, []
        for callback, error in reports:
            callback(error, None)
        if not reports:
            self.closed.wait(min(timeout, 0.01))
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.closed.set()
        self.poll(0)
        return self.hanging

    def purge(self) -> None:
        self.hanging = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata:
        return _Metadata(self.partitions)


class ScriptedSink(KafkaSink):
    def __init__(self, scripts: list[list[Any]], producers: int = 1) -> None:
        self.replaced: list[str] = []
        super().__init__(
            "10.0.0.1:9092",
            on_replaced=self.replaced.append,
            batched_topics=frozenset({"events"}),
            producers=producers,
        )
        self.scripts = scripts
        self.made: list[ScriptedProducer] = []

    def _new_producer(self) -> Any:
        self.made.append(ScriptedProducer(self.scripts.pop(0) if self.scripts else []))
        return self.made[-1]


RECORDS = [("letters", b"acme:u1", b"{}")]


def fatal(code: int) -> KafkaError:
    return KafkaError(code, fatal=True)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_fatal_producer_error_replaces_the_producer_and_the_batch_is_stored_on_the_next() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[fatal(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER)], [None]])
        await sink.send_all(RECORDS, timeout_s=5)
        problem = await sink.ready(1)
        await sink.stop()
        return sink, problem

    sink, problem = run(scenario())
    assert problem is None  # the retry succeeded: the sink writes
    assert sink.replaced == ["OUT_OF_ORDER_SEQUENCE_NUMBER"]
    assert len(sink.made) == 2 and sink.made[0].closed.is_set()
    assert [len(made.produced) for made in sink.made] == [1, 1]


def test_a_record_too_large_is_the_requests_error_not_an_outage_and_not_retried() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)], [None]])
        with pytest.raises(RecordsRefused) as refused:
            await sink.send_all(RECORDS, timeout_s=5)
        assert "10.0.0.1" not in str(refused.value)
        assert "MSG_SIZE_TOO_LARGE" in str(refused.value)
        problem = await sink.ready(1)
        await sink.send_all(RECORDS, timeout_s=5)  # the next batch: a fresh producer
        await sink.stop()
        return sink, problem

    sink, problem = run(scenario())
    assert problem is not None and "10.0.0.1" not in problem
    assert sink.replaced == ["MSG_SIZE_TOO_LARGE"]
    assert [len(made.produced) for made in sink.made] == [1, 1]


def test_a_record_the_client_refuses_to_produce_is_the_requests_error() -> None:
    class TooLarge(ScriptedProducer):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))

    class Sink(ScriptedSink):
        def _new_producer(self) -> Any:
            self.made.append(TooLarge([]))
            return self.made[-1]

    async def scenario() -> None:
        sink = Sink([])
        with pytest.raises(RecordsRefused):
            await sink.send_all(RECORDS, timeout_s=5)
        await sink.stop()

    run(scenario())


def test_an_unreachable_broker_is_an_outage_and_no_acknowledgement_in_time_too() -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink([[KafkaError(KafkaError._MSG_TIMED_OUT)], [HANG]])
        with pytest.raises(SinkUnavailable) as unreachable:
            await sink.send_all(RECORDS, timeout_s=5)
        with pytest.raises(SinkUnavailable) as slow:
            await sink.send_all(RECORDS, timeout_s=0.05)
        assert "10.0.0.1" not in f"{unreachable.value} {slow.value}"
        assert await sink.ready(1) == "the last write to the event store (Kafka) failed"
        return sink

    sink = run(scenario())
    # The timed-out producer was replaced; a slow one keeps its records queued.
    assert sink.replaced == ["_MSG_TIMED_OUT"]
    assert len(sink.made) == 2 and not sink.made[1].closed.is_set()


def test_a_full_queue_is_an_outage_and_keeps_the_producer() -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink([[BufferError, None]])
        with pytest.raises(SinkUnavailable) as full:
            await sink.send_all(RECORDS, timeout_s=5)
        assert "not keeping up" in str(full.value)
        await sink.send_all(RECORDS, timeout_s=5)
        await sink.stop()
        return sink

    sink = run(scenario())
    assert sink.replaced == [] and len(sink.made) == 1


def test_a_second_failure_on_the_fresh_producer_is_a_503_and_not_ready() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[fatal(KafkaError._FATAL)], [fatal(KafkaError._FATAL)]])
        with pytest.raises(SinkUnavailable):
            await sink.send_all(RECORDS, timeout_s=5)
        problem = await sink.ready(1)
        await sink.stop()
        return sink, problem

    sink, problem = run(scenario())
    assert sink.replaced == ["_FATAL"] * 2
    assert problem == "the last write to the event store (Kafka) failed"


def test_a_request_is_answered_only_once_its_last_partition_is_acknowledged() -> None:
    keys = [f"acme:user-{n}".encode() for n in range(40)]
    records = [("events", key, b'{"n": %d}' % n) for n, key in enumerate(keys)]
    partitions = {partition_for(key, 4) for key in keys}
    assert len(partitions) == 4

    async def scenario() -> ScriptedSink:
        # Three partitions' batch messages acknowledged, the fourth never.
        sink = ScriptedSink([[None, None, None, HANG]])
        with pytest.raises(SinkUnavailable):
            await sink.send_all(records, timeout_s=0.3)
        return sink

    sink = run(scenario())
    produced = sink.made[0].produced
    # One batch message per partition, each holding that partition's events in order,
    # without a key (the partition is the batch's).
    assert sorted(partition for _, _, _, partition in produced) == [0, 1, 2, 3]
    assert all(key is None for _, _, key, _ in produced)
    for _, value, _, partition in produced:
        numbers = [event["n"] for event in orjson.loads(value)]
        assert numbers == sorted(numbers)
        assert {partition_for(keys[n], 4) for n in numbers} == {partition}


def test_records_of_other_topics_keep_their_key_for_the_java_partitioner() -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink([[]])
        await sink.send_all([("letters", b"acme:u1", b"{}"), ("letters", None, b"[]")], 5)
        await sink.stop()
        return sink

    produced = run(scenario()).made[0].produced
    assert produced == [("letters", b"{}", b"acme:u1", None), ("letters", b"[]", None, None)]


def test_a_partitions_events_become_bounded_batch_messages_in_order() -> None:
    values = [b'{"n": %d, "pad": "%s"}' % (n, b"x" * 1000) for n in range(600)]
    messages = as_batch_messages(values)
    assert all(key is None for key, _ in messages)
    assert all(len(value) <= BATCH_MESSAGE_BYTES for _, value in messages)
    assert len(messages) > 1
    decoded = [event["n"] for _, value in messages for event in orjson.loads(value)]
    assert decoded == list(range(600))
    huge = b'{"pad": "%s"}' % (b"y" * (BATCH_MESSAGE_BYTES + 10))
    assert [len(v) for _, v in as_batch_messages([huge])] == [len(huge) + 2]


def _records_by_partition(units: int) -> list[tuple[str, bytes, bytes]]:
    """Event records in partition order (0, 1, 2, 3), so producers are made in slot order."""
    keys = sorted(
        (f"acme:user-{n}".encode() for n in range(units)), key=lambda key: partition_for(key, 4)
    )
    assert {partition_for(key, 4) for key in keys} == {0, 1, 2, 3}
    return [("events", key, b'{"n": %d}' % n) for n, key in enumerate(keys)]


def test_each_partition_goes_through_its_own_producer_and_dead_letters_through_the_first() -> None:
    records = [*_records_by_partition(40), ("letters", b"acme:u1", b"{}")]

    async def scenario() -> ScriptedSink:
        sink = ScriptedSink([], producers=4)
        await sink.send_all(records, timeout_s=5)
        await sink.send_all(records, timeout_s=5)  # the same producers again
        await sink.stop()
        return sink

    sink = run(scenario())
    assert len(sink.made) == 4
    for slot, producer in enumerate(sink.made):
        partitions = [
            partition for topic, _, _, partition in producer.produced if topic == "events"
        ]
        assert partitions == [slot, slot]
    assert [topic for topic, *_ in sink.made[0].produced].count("letters") == 2
    assert all(producer.closed.is_set() for producer in sink.made)


def test_a_fatal_error_on_one_producer_replaces_that_one_only_and_the_batch_is_stored() -> None:
    records = _records_by_partition(40)

    async def scenario() -> tuple[ScriptedSink, str | None, list[bool]]:
        # The third producer's (partition 2's) first delivery fails for good.
        sink = ScriptedSink([[], [], [fatal(KafkaError._FATAL)], []], producers=4)
        await sink.send_all(records, timeout_s=5)
        problem = await sink.ready(1)
        closed = [producer.closed.is_set() for producer in sink.made]
        await sink.stop()
        return sink, problem, closed

    sink, problem, closed = run(scenario())
    assert problem is None
    assert sink.replaced == ["_FATAL"]
    assert closed == [False, False, True, False, False]
    # The request was sent again whole: partition 2 through the fresh producer.
    assert [partition for *_, partition in sink.made[4].produced] == [2]
    assert [len(producer.produced) for producer in sink.made[:4]] == [2, 2, 1, 2]
