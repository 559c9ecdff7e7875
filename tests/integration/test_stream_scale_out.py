"""Stream workers scale out on 12 partitions: a worker added mid-run and one SIGKILLed
mid-run leave the aggregates exactly equal to the ground truth; the rebalance pauses are
printed.

The log (``fault_log``, with 5% re-sent and 5% late events) goes out in three waves. The
run starts with ``START`` workers in one consumer group; during the first wave a worker
joins (the group rebalances: partitions move, their states are snapshotted by the
worker giving them up and restored by the one taking them); during the second wave one
of the first workers is SIGKILLed (its partitions move once the group notices its
missing heartbeats: the session timeout, 10 s); the third wave goes to the survivors.
The pause reported for each is the time from the join (the new process's spawn) or the
kill until every partition's progress mark has moved again, with events waiting on each.

``LIFTSTREAM_SCALE_EVENTS`` sizes the log; without it the suite runs the reduced form
(12,000 events, 2 workers then 3 then 2; the full form starts with 3). The acceptance
run, with figures in docs/scaling.md:

    LIFTSTREAM_SCALE_EVENTS=300000 .venv/bin/pytest -m slow -s \\
        tests/integration/test_stream_scale_out.py

Throughput with 1, 2 and 4 workers is a benchmark: ``python -m bench.worker_scaling``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liftstream.settings import Settings
from services.broker.topics import delete_namespace_topics, ensure_topics
from tests.integration.fault_log import generate_log, with_faults
from tests.integration.helpers_faults import (
    WorkerPool,
    assert_equals_truth,
    processed,
    produce_messages,
    wait_for_group_members,
    waves,
)
from tests.integration.helpers_stream import AggregatesReader, end_offsets

EVENTS_VAR = "LIFTSTREAM_SCALE_EVENTS"
REDUCED = not os.environ.get(EVENTS_VAR)
EVENTS = int(os.environ.get(EVENTS_VAR) or 12_000)
PARTITIONS = 12
#: Workers at the start; one joins, then one is killed.
START = 2 if REDUCED else 3
WAIT = 180.0 + EVENTS / 500

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300 + 4 * WAIT)]

#: (monotonic time, events processed per source partition)
Sample = tuple[float, dict[int, int]]


@pytest.fixture
def settings(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """A namespace with 12 event partitions on the shared broker (topics created)."""
    settings = Settings(
        bootstrap=kafka_bootstrap,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=PARTITIONS,
        home=tmp_path / "home",
        results_url="",
    )
    settings.home.mkdir(parents=True)
    for name, value in {
        "LIFTSTREAM_BOOTSTRAP": kafka_bootstrap,
        "LIFTSTREAM_NAMESPACE": settings.namespace,
        "LIFTSTREAM_PARTITIONS": str(PARTITIONS),
        "LIFTSTREAM_HOME": str(settings.home),
    }.items():
        monkeypatch.setenv(name, value)
    ensure_topics(kafka_bootstrap, settings.topics)
    yield settings
    with contextlib.suppress(Exception):
        delete_namespace_topics(kafka_bootstrap, settings.namespace)


def follow(
    reader: AggregatesReader,
    samples: list[Sample],
    until: Callable[[int], bool],
    check: Callable[[], None],
    timeout: float,
) -> int:
    """Poll the progress marks, recording samples, until ``until(processed)``."""
    deadline = time.monotonic() + timeout
    while True:
        reader.poll()
        view = reader.view()
        done = processed(view)
        per_partition = {p: sum(offsets.values()) for p, offsets in view.progress.items()}
        samples.append((time.monotonic(), per_partition))
        if until(done):
            return done
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done:,} events processed after {timeout:.0f}s")


def pause_after(samples: list[Sample], moment: float, ends: dict[int, int]) -> float:
    """Seconds from ``moment`` until every partition with events waiting (its end offsets
    ``ends`` beyond its progress) had moved past where it stood at ``moment``."""
    before = [counts for at, counts in samples if at <= moment]
    standing = before[-1] if before else {}
    waiting = {p for p in range(PARTITIONS) if ends.get(p, 0) > standing.get(p, 0)}
    for at, counts in samples:
        if at <= moment:
            continue
        waiting -= {p for p in waiting if counts.get(p, 0) > standing.get(p, 0)}
        if not waiting:
            return at - moment
    raise AssertionError(f"partitions {sorted(waiting)} never moved after the change")


def partition_ends(settings: Settings) -> dict[int, int]:
    """Per source partition, the end offsets of both event topics added up."""
    topics = settings.topics
    ends: dict[int, int] = {}
    for (_, partition), offset in end_offsets(
        settings, [topics.exposures, topics.outcomes]
    ).items():
        ends[partition] = ends.get(partition, 0) + offset
    return ends


def test_worker_added_and_worker_killed_mid_run_leave_the_aggregates_exact(
    settings: Settings, tmp_path: Path
) -> None:
    log = generate_log(EVENTS, seed=1611)
    messages = with_faults(log.messages, duplicated=0.05, late=0.05, seed=1612)
    rng = random.Random(1613)
    (start1, act1, end1), (start2, act2, end2), (start3, _, end3) = waves(len(messages), 3, rng)
    group = f"{settings.namespace}-stream"
    samples: list[Sample] = []
    reader = AggregatesReader(settings)

    with WorkerPool(tmp_path) as pool:
        workers = [pool.start() for _ in range(START)]

        def alive() -> None:
            for worker in workers:
                assert worker.alive(), f"worker died on its own:\n{worker.log_tail()}"

        wait_for_group_members(settings, group, START)
        produce_messages(settings, messages[start1:end1])
        follow(reader, samples, lambda done: done >= act1, alive, WAIT)
        joined_at = time.monotonic()
        workers.append(pool.start())
        produce_messages(settings, messages[start2:end2])
        ends_after_join = partition_ends(settings)
        follow(reader, samples, lambda done: done >= act2, alive, WAIT)
        wait_for_group_members(settings, group, START + 1)
        killed_at = time.monotonic()
        victim = workers.pop(rng.randrange(START))
        pool.kill(victim)
        produce_messages(settings, messages[start3:end3])
        ends_after_kill = partition_ends(settings)
        total = sum(ends_after_kill.values())
        follow(reader, samples, lambda done: done >= total, alive, WAIT)
        view = reader.wait_until_caught_up(timeout=WAIT)
    reader.close()

    assert_equals_truth(view, log)
    join_pause = pause_after(samples, joined_at, ends_after_join)
    kill_pause = pause_after(samples, killed_at, ends_after_kill)
    print(
        f"\n{len(messages):,} messages on {PARTITIONS} partitions; {START} workers, one "
        f"joined at {act1:,} processed (spawn to every partition moving again "
        f"{join_pause:.1f}s), one SIGKILLed at {act2:,} processed (kill to every partition "
        f"moving again {kill_pause:.1f}s; session timeout 10s); aggregates == truth"
    )
