"""The worker's message handling and publishing, without Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.aggregates import parse_aggregate
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.shadow import SHADOW_EVENT
from schemas.topics import TopicCatalog
from services.stream.attribution import AggregateKey, ExposureSummary, UnitsKey, UnitState
from services.stream.intake import SourceMessage
from services.stream.processor import StreamProcessor
from services.stream.state_codec import (
    decode_chunk,
    decode_unit_state,
    encode_chunk,
    encode_unit_state,
)

CATALOG = TopicCatalog(namespace="ns", event_partitions=2)
T0 = datetime(2024, 3, 1, tzinfo=UTC)


class CountingTable(dict[bytes, UnitState]):
    writes = 0

    def __setitem__(self, key: bytes, value: UnitState) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def exposure(unit: str, variant: str, seconds: int) -> ExposureEvent:
    return ExposureEvent(
        tenant_id="acme",
        unit_id=unit,
        timestamp=T0 + timedelta(seconds=seconds),
        experiment_key="checkout",
        variant_key=variant,
    )


def outcome(unit: str, value: float, seconds: int) -> OutcomeEvent:
    return OutcomeEvent(
        tenant_id="acme",
        unit_id=unit,
        timestamp=T0 + timedelta(seconds=seconds),
        event="purchase",
        value=value,
    )


class Feed:
    """Hands out consecutive offsets per topic, all on partition 0."""

    def __init__(self) -> None:
        self.offsets = {CATALOG.exposures: 0, CATALOG.outcomes: 0}

    def __call__(
        self, event: ExposureEvent | OutcomeEvent | None = None, *, raw: bytes = b""
    ) -> SourceMessage:
        if event is None:
            topic, key, value = CATALOG.outcomes, b"acme:u1", raw
        else:
            topic = CATALOG.exposures if event.type == "exposure" else CATALOG.outcomes
            key, value = event.partition_key, event.to_json()
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        return SourceMessage(topic, 0, offset, key, value)


def nonzero(totals: dict[AggregateKey, tuple[float, float]]) -> dict[object, tuple[float, float]]:
    return {key: pair for key, pair in totals.items() if pair != (0, 0)}


def owning_processor(table: dict[bytes, UnitState] | None = None) -> StreamProcessor:
    processor = StreamProcessor(CATALOG)
    processor.assign(0, table if table is not None else CountingTable(), {})
    processor.partials.take_publication(T0)
    return processor


def test_malformed_message_is_refused_and_its_neighbours_count() -> None:
    processor, feed = owning_processor(), Feed()
    assert processor.handle(feed(exposure("u1", "control", 0))) is None
    refused = processor.handle(feed(raw=b'{"type": "outcome", "tenant_id": 7}'))
    assert refused is not None and refused.source_offset == 0
    assert processor.handle(feed(outcome("u1", 4.0, 5))) is None

    publication = processor.partials.take_publication(T0)
    assert processor.dead_letter_count == 1
    sums = {r.record_key: r for r in publication.aggregates}
    assert sums[b"stats|acme|checkout|control|purchase|sum|0"].sum == 4.0  # type: ignore[union-attr]
    # Progress moved past the refused message (offset 0) and the good one (offset 1).
    assert publication.progress[0].next_offsets == {CATALOG.exposures: 1, CATALOG.outcomes: 2}


def test_resent_event_counts_once() -> None:
    table = CountingTable()
    processor, feed = owning_processor(table), Feed()
    event = outcome("u1", 1.0, 5)
    processor.handle(feed(exposure("u1", "control", 0)))
    processor.handle(feed(event))
    once = processor.partials.totals(0)
    processor.handle(feed(event))
    assert processor.partials.totals(0) == once
    assert table.writes == 1  # the unit's state is created once, then updated in place
    assert processor.partials.take_publication(T0).progress[0].next_offsets[CATALOG.outcomes] == 2


def test_shadow_observations_keep_no_unit_state_but_move_progress() -> None:
    """They are for the raw log (the results service reads them); kept in the stream they
    would grow a few synthetic units' histories without end."""
    table = CountingTable()
    processor, feed = owning_processor(table), Feed()
    processor.handle(feed(exposure("u1", "control", 0)))
    shadow = OutcomeEvent(
        tenant_id="acme",
        unit_id="u1",
        timestamp=T0 + timedelta(seconds=3),
        event=SHADOW_EVENT,
        properties={"shadow": "pricing", "run": "candidate", "match": False, "primary_ms": 1},
    )
    assert processor.handle(feed(shadow)) is None
    assert processor.handle(feed(outcome("u1", 2.0, 5))) is None
    assert table[b"acme:u1"].outcomes.keys() == {"purchase"}
    assert all(SHADOW_EVENT not in key for key in nonzero(processor.partials.totals(0)))  # type: ignore[operator]
    assert processor.partials.take_publication(T0).progress[0].next_offsets[CATALOG.outcomes] == 2


def test_message_of_a_partition_not_owned_is_left_alone() -> None:
    processor, feed = owning_processor(), Feed()
    message = feed(exposure("u1", "control", 0))
    moved = SourceMessage(message.topic, 1, message.offset, message.key, message.value)
    assert processor.handle(moved) is None
    assert processor.units == {0: {}}


def test_unexpected_failure_becomes_a_dead_letter_and_the_worker_goes_on() -> None:
    class BrokenTable(CountingTable):
        def __setitem__(self, key: bytes, value: UnitState) -> None:
            raise RuntimeError("disk on fire")

    processor, feed = owning_processor(BrokenTable()), Feed()
    refused = processor.handle(feed(exposure("u1", "control", 0)))
    assert refused is not None and "disk on fire" in refused.reason


def test_rebuilt_partials_match_the_running_ones_after_a_snapshot_round_trip() -> None:
    processor, feed = owning_processor(), Feed()
    for index, unit in enumerate(["u1", "u2", "u3"]):
        processor.handle(feed(outcome(unit, 2.5, 10)))
        processor.handle(feed(exposure(unit, "control" if index else "treatment", 5)))
    processor.handle(feed(exposure("u3", "treatment", 1)))  # u3 now excluded
    running = processor.partials.totals(0)

    restored = decode_chunk(
        encode_chunk([(key, encode_unit_state(s)) for key, s in processor.units[0].items()])
    )
    assert restored == processor.units[0]
    recovered = StreamProcessor(CATALOG)
    recovered.assign(0, restored, {})
    assert nonzero(recovered.partials.totals(0)) == nonzero(running)
    assert running[UnitsKey("acme", "checkout", "treatment")] == (1, 1)


def delivered(result: object = None, error: Exception | None = None) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


def test_progress_is_sent_only_after_its_aggregates_are_delivered() -> None:
    processor, feed = owning_processor(), Feed()
    processor.handle(feed(exposure("u1", "control", 0)))
    processor.handle(feed(outcome("u1", 3.0, 1)))
    sent: list[str] = []
    deliveries: list[asyncio.Future[object]] = []

    async def scenario() -> int:
        loop = asyncio.get_running_loop()

        async def send(key: bytes, value: bytes) -> asyncio.Future[object]:
            sent.append(parse_aggregate(value).kind)
            deliveries.append(loop.create_future())
            return deliveries[-1]

        publishing = asyncio.create_task(processor.publish(send))
        await asyncio.sleep(0.01)
        assert set(sent) == {"variant_units", "metric_stats"}
        for delivery in deliveries[:-1]:
            delivery.set_result(None)
        await asyncio.sleep(0.01)
        assert "progress" not in sent
        deliveries[-1].set_result(None)
        return await publishing

    assert asyncio.run(scenario()) == len(sent)
    assert sent[-1] == "progress" and sent.count("progress") == 1
    assert asyncio.run(processor.publish(sending())) == 0


def sending(error: Exception | None = None) -> Callable[[bytes, bytes], Awaitable[Any]]:
    async def send(key: bytes, value: bytes) -> asyncio.Future[object]:
        return delivered(error=error)

    return send


def test_undelivered_aggregates_are_sent_again_and_progress_waits_for_them() -> None:
    processor, feed = owning_processor(), Feed()
    processor.handle(feed(exposure("u1", "control", 0)))
    sent: list[bytes] = []

    async def broken(key: bytes, value: bytes) -> asyncio.Future[object]:
        sent.append(key)
        return delivered(error=ConnectionError("broker gone"))

    async def send(key: bytes, value: bytes) -> asyncio.Future[object]:
        sent.append(key)
        return delivered()

    with pytest.raises(ConnectionError):
        asyncio.run(processor.publish(broken))
    assert sent == [b"units|acme|checkout|control|0"]
    asyncio.run(processor.publish(send))
    assert sent[1:] == [b"units|acme|checkout|control|0", b"progress|0"]


def test_undelivered_progress_is_sent_again() -> None:
    processor, feed = owning_processor(), Feed()
    processor.handle(feed(exposure("u1", "control", 0)))
    progress: list[bytes] = []

    async def send(key: bytes, value: bytes) -> asyncio.Future[object]:
        if key.startswith(b"progress"):
            progress.append(value)
            return delivered(error=ConnectionError("broker gone"))
        return delivered()

    async def twice() -> None:
        await processor.publish(send)
        await asyncio.sleep(0)  # let the delivery callback run
        await processor.publish(send)

    asyncio.run(twice())
    assert len(progress) == 2


states = st.builds(
    UnitState,
    tenant_id=st.just("acme"),
    partition=st.integers(0, 63),
    seen_event_ids=st.sets(st.uuids().map(lambda u: u.int), max_size=5),
    exposures=st.dictionaries(
        st.sampled_from(["a", "b"]),
        st.builds(
            ExposureSummary,
            st.integers(0, 2**62),
            st.sampled_from(["x", "y"]),
            st.lists(st.sampled_from(["x", "y", "z"]), unique=True, min_size=1).map(
                lambda v: tuple(sorted(v))
            ),
        ),
    ),
    outcomes=st.dictionaries(
        st.sampled_from(["click", "purchase"]),
        st.lists(
            st.tuples(st.integers(0, 2**62), st.floats(allow_nan=False, allow_infinity=False))
        ),
    ),
)


@settings(max_examples=100, deadline=None)
@given(state=states)
def test_unit_state_survives_the_snapshot_codec(state: UnitState) -> None:
    assert decode_unit_state(encode_unit_state(state)) == state


def test_codec_keeps_ids_compact() -> None:
    state = UnitState(tenant_id="acme", partition=0)
    state.seen_event_ids.update(uuid.uuid4().int for _ in range(1000))
    assert len(encode_unit_state(state)) < 1000 * 23
