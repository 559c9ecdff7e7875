"""The sink's recovery rules with scripted producers (the real broker: test_collector_sink):
which failures replace a producer, which are retried, which are an outage (503) and which
are the records' own fault (422)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
)

from services.collector.sink import (
    BATCH_MESSAGE_BYTES,
    KafkaSink,
    RecordsRefused,
    SinkUnavailable,
    as_batch_messages,
)


class _Batch:
    def append(self, key: Any, value: Any, timestamp: Any) -> object:
        return object()


class _Client:
    async def fetch_all_metadata(self) -> None:
        return None


class ScriptedProducer:
    """Each send_batch resolves with the next outcome of ``script`` (None = acknowledged,
    an exception = that error, "hang" = never); the broker always answers metadata."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.stopped = False
        self.client = _Client()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = self.script.pop(0) if self.script else None
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        elif outcome != "hang":
            future.set_result(None)
        return future


class ScriptedSink(KafkaSink):
    def __init__(self, scripts: list[list[Any]]) -> None:
        self.replaced: list[str] = []
        super().__init__("10.0.0.1:9092", producers=1, on_replaced=self.replaced.append)
        self.scripts = scripts
        self.made: list[ScriptedProducer] = []

    def _new_producer(self, number: int) -> Any:
        self.made.append(ScriptedProducer(self.scripts.pop(0) if self.scripts else []))
        return self.made[-1]


RECORDS = [("topic", b"acme:u1", b"{}")]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_sequence_error_replaces_the_producer_and_the_batch_is_stored_on_the_next() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[OutOfOrderSequenceNumber()], [None]])
        await sink.send_all(RECORDS, timeout_s=5)
        return sink, await sink.ready(1)

    sink, problem = run(scenario())
    assert problem is None  # the retry succeeded: the sink writes
    assert sink.replaced == ["OutOfOrderSequenceNumber"]
    assert len(sink.made) == 2 and sink.made[0].stopped


def test_a_record_too_large_is_the_requests_error_not_an_outage_and_not_retried() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[MessageSizeTooLargeError()], [None]])
        with pytest.raises(RecordsRefused) as refused:
            await sink.send_all(RECORDS, timeout_s=5)
        assert "10.0.0.1" not in str(refused.value)
        problem = await sink.ready(1)
        await sink.send_all(RECORDS, timeout_s=5)  # the next batch: a fresh producer
        return sink, problem

    sink, problem = run(scenario())
    assert problem is not None and "10.0.0.1" not in problem
    assert sink.replaced == ["MessageSizeTooLargeError"]
    assert len(sink.made) == 2


def test_an_unreachable_broker_is_an_outage_and_no_acknowledgement_in_time_too() -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink([[KafkaConnectionError()], ["hang"]])
        with pytest.raises(SinkUnavailable) as unreachable:
            await sink.send_all(RECORDS, timeout_s=5)
        with pytest.raises(SinkUnavailable) as slow:
            await sink.send_all(RECORDS, timeout_s=0.05)
        assert "10.0.0.1" not in f"{unreachable.value} {slow.value}"
        return sink

    sink = run(scenario())
    # The unreachable broker's producer was replaced; a slow one keeps its records queued.
    assert sink.replaced == ["KafkaConnectionError"]
    assert len(sink.made) == 2 and not sink.made[1].stopped


def test_a_second_failure_on_the_fresh_producer_is_a_503_and_not_ready() -> None:
    async def scenario() -> tuple[ScriptedSink, str | None]:
        sink = ScriptedSink([[OutOfOrderSequenceNumber()], [OutOfOrderSequenceNumber()]])
        with pytest.raises(SinkUnavailable):
            await sink.send_all(RECORDS, timeout_s=5)
        return sink, await sink.ready(1)

    sink, problem = run(scenario())
    assert sink.replaced == ["OutOfOrderSequenceNumber"] * 2
    assert problem == "the last write to the event store (Kafka) failed"


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
