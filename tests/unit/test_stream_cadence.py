"""When the stream worker publishes and snapshots, on a fake clock: publications every
``publish_interval`` from the start of the last one (not every other tick), a publication
that waited for the last one's delivery right after it, and a snapshot round that writes
one partition per turn so events are applied in between."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from liftstream.settings import load_settings
from services.stream import worker as worker_module
from services.stream.worker import SNAPSHOT_RETRY_S, StreamWorker

#: A fake tick that adds up exactly in binary floating point (0.05 would not).
STEP = 0.0625


class _Clock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


class _Definitions:
    def apply(self, processor: Any) -> None:
        return None

    async def publish_errors(self, send: Any) -> int:
        return 0


class _Recorder:
    """Stands in for the broker: publications end when released, snapshots may fail."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.publications: list[float] = []
        self.release = asyncio.Event()
        self.release.set()
        self.snapshots: list[tuple[float, list[int]]] = []
        self.failing: set[int] = set()

    async def publish(self) -> None:
        self.publications.append(self.clock.now)
        await self.release.wait()

    async def snapshot(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        self.snapshots.append((self.clock.now, partitions))
        if self.failing & set(partitions):
            raise ConnectionError("broker away")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(worker_module.time, "monotonic", fake)
    return fake


def _worker(
    monkeypatch: pytest.MonkeyPatch, clock: _Clock, **intervals: float
) -> tuple[StreamWorker, _Recorder]:
    monkeypatch.setenv("LIFTSTREAM_BOOTSTRAP", "127.0.0.1:1")
    worker = StreamWorker(load_settings(), **intervals)
    recorder = _Recorder(clock)
    worker._publish = recorder.publish  # type: ignore[method-assign]
    worker.snapshot = recorder.snapshot  # type: ignore[method-assign]
    for partition in range(4):
        worker.processor.assign(partition, {}, {})
    return worker, recorder


async def _turns(worker: StreamWorker, clock: _Clock, seconds: float, step: float) -> None:
    """Housekeeping every ``step`` (fake) seconds for ``seconds``, on a fixed grid (as a
    timer's ticks are, however long each turn takes)."""
    origin = clock.now
    for turn in range(1, round(seconds / step) + 1):
        clock.now = origin + turn * step
        await worker._housekeeping(_Definitions())  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the background publication runs


def test_publications_follow_the_interval_not_every_other_tick(
    monkeypatch: pytest.MonkeyPatch, clock: _Clock
) -> None:
    worker, recorder = _worker(monkeypatch, clock, publish_interval=0.5)
    assert worker.tick_interval == 0.05

    def settle() -> None:  # collecting the young generations takes a moment
        clock.now += 0.001

    worker._heap.settle = settle  # type: ignore[method-assign]
    start = clock.now

    asyncio.run(_turns(worker, clock, 5.0, STEP))

    # Due 0.5 s after the last one *started*: were it after the turn that started it
    # ended (0.001 s later), every publication would wait for one more tick.
    expected = [start + 0.5 * n for n in range(1, 11)]
    assert recorder.publications == pytest.approx(expected, abs=0.002)


def test_a_publication_waiting_for_the_last_one_starts_right_after_it(
    monkeypatch: pytest.MonkeyPatch, clock: _Clock
) -> None:
    worker, recorder = _worker(monkeypatch, clock, publish_interval=0.5)

    async def scenario() -> None:
        await _turns(worker, clock, 0.5, STEP)  # the first publication, delivered at once
        recorder.release.clear()
        await _turns(worker, clock, 0.5, STEP)  # the second starts and is not delivered
        await _turns(worker, clock, 0.75, STEP)  # due at +0.5, but the second is in flight
        assert len(recorder.publications) == 2
        recorder.release.set()
        await asyncio.sleep(0)
        await _turns(worker, clock, STEP, STEP)  # the first tick after the delivery

    asyncio.run(scenario())
    assert len(recorder.publications) == 3
    assert recorder.publications[2] - recorder.publications[1] == 0.75 + STEP


def test_a_snapshot_round_writes_one_partition_per_turn_and_retries_a_failed_one(
    monkeypatch: pytest.MonkeyPatch, clock: _Clock
) -> None:
    worker, recorder = _worker(monkeypatch, clock, publish_interval=0.5, snapshot_interval=30.0)
    recorder.failing = {2}
    start = clock.now

    asyncio.run(_turns(worker, clock, 30.0 + 3 * STEP, STEP))

    written = [(at - start, partitions) for at, partitions in recorder.snapshots]
    # One partition per turn; 2 failed and waits SNAPSHOT_RETRY_S, 3 waits behind it.
    assert written == [(30.0, [0]), (30.0 + STEP, [1]), (30.0 + 2 * STEP, [2])]

    recorder.failing = set()
    asyncio.run(_turns(worker, clock, SNAPSHOT_RETRY_S, STEP))
    written = [(at - start, partitions) for at, partitions in recorder.snapshots]
    retry = 30.0 + 2 * STEP + SNAPSHOT_RETRY_S
    assert written[3:] == [(retry, [2]), (retry + STEP, [3])]
