"""Helpers for the stream fault tests: workers killed and restarted as events arrive.

- ``produce_messages``: sends ``fault_log`` messages (bulk aiokafka batches).
- ``WorkerPool``: starts ``python -m services.stream`` incarnations (one log file each),
  SIGKILLs them, and stops whatever still runs at the end.
- ``wait_for_progress``: polls the aggregates until a progress mark published after a
  given moment shows at least a number of events processed.
- ``wait_for_group_members``: until the worker group has as many members as expected.
- ``waves``: slices of the log to send one after the other, each with a seeded
  progress threshold to kill a worker at.
- ``assert_equals_truth``: every aggregate equals the ``fault_log`` ground truth, exactly.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from kafka import KafkaAdminClient

from bench.bulk_produce import produce_bulk
from liftstream.settings import Settings
from schemas.aggregates import StreamProgress
from tests.integration.fault_log import EventLog, Message
from tests.integration.helpers_stream import AggregatesReader, AggregatesView, StreamWorker

K = TypeVar("K")


def produce_messages(settings: Settings, messages: list[Message]) -> int:
    """Send ``fault_log`` messages to the event topics; return how many were sent."""
    topics = {"exposure": settings.topics.exposures, "outcome": settings.topics.outcomes}
    return produce_bulk(
        settings.bootstrap, ((topics[kind], key, value) for kind, key, value in messages)
    )


def processed(view: AggregatesView) -> int:
    """Events the progress marks say are fully reflected (topics start at offset 0)."""
    return sum(sum(offsets.values()) for offsets in view.progress.values())


def last_progress_at(reader: AggregatesReader) -> datetime | None:
    moments = [r.updated_at for r in reader.latest.values() if isinstance(r, StreamProgress)]
    return max(moments, default=None)


SNAPSHOT_INTERVAL = 0.3


def restored_units(worker: StreamWorker) -> int:
    """Unit states the worker restored from snapshots when it took its partitions."""
    text = worker.log_path.read_text(errors="replace")
    return sum(int(n) for n in re.findall(r"restored (\d+) unit states", text))


class WorkerPool:
    """Stream worker processes of one test; each incarnation logs to its own file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[StreamWorker] = []
        self.started_at = datetime.now(UTC)  # when the latest worker was started

    def start(self) -> StreamWorker:
        self.started_at = datetime.now(UTC)
        log_path = self.log_dir / f"stream-worker-{len(self.workers)}.log"
        # Snapshots every 0.3 s, so kills land before, during and after snapshot writes.
        self.workers.append(StreamWorker(log_path, snapshot_interval=SNAPSHOT_INTERVAL))
        return self.workers[-1]

    def kill(self, worker: StreamWorker) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or committed."""
        assert worker.alive(), f"worker died on its own:\n{worker.log_tail()}"
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        worker.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for worker in self.workers:
            worker.stop()


def wait_for_progress(
    reader: AggregatesReader,
    at_least: int,
    workers: list[StreamWorker],
    *,
    published_after: datetime,
    timeout: float,
) -> int:
    """Poll until a progress mark newer than ``published_after`` (so the current workers
    did the work) shows ``at_least`` events processed; return how many it shows."""
    started = time.monotonic()
    while True:
        reader.poll()
        done = processed(reader.view())
        latest = last_progress_at(reader)
        if done >= at_least and latest is not None and latest > published_after:
            return done
        for worker in workers:
            assert worker.alive(), f"worker died on its own:\n{worker.log_tail()}"
        if time.monotonic() - started > timeout:
            tails = "\n".join(worker.log_tail() for worker in workers)
            raise TimeoutError(f"{done} events processed after {timeout}s, not {at_least}\n{tails}")


def wait_for_group_members(
    settings: Settings, group: str, members: int, timeout: float = 120.0
) -> None:
    """Until ``group`` is stable with ``members`` members (each then owns partitions)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        deadline = time.monotonic() + timeout
        while True:
            described = admin.describe_groups([group])[group]
            state, joined = described["group_state"], len(described["members"])
            if state == "Stable" and joined == members:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"group {group} is {state} with {joined} members after {timeout}s, "
                    f"not {members}"
                )
            time.sleep(0.3)
    finally:
        admin.close()


def waves(total: int, count: int, rng: random.Random) -> list[tuple[int, int, int]]:
    """``count`` equal slices ``(start, kill at, end)`` of ``total`` events, each with a
    seeded progress threshold in the middle 80% of the slice."""
    bounds = [total * index // count for index in range(count + 1)]
    return [
        (start, start + int((end - start) * rng.uniform(0.1, 0.9)), end)
        for start, end in itertools.pairwise(bounds)
    ]


def _nonzero(pairs: Mapping[K, tuple[float, float]]) -> dict[K, tuple[float, float]]:
    # A variant whose units all became excluded may be published as zeros; a reader
    # treats a missing record as zero, so both sides drop them.
    return {key: pair for key, pair in pairs.items() if pair != (0, 0)}


def assert_equals_truth(view: AggregatesView, log: EventLog) -> None:
    """Units, excluded units, Σx and Σx² of every aggregate exactly equal to the truth."""
    got_units, want_units = _nonzero(view.units), _nonzero(log.units)
    got_stats, want_stats = _nonzero(view.stats), _nonzero(log.stats)
    wrong = [
        (key, got.get(key), want.get(key))
        for got, want in ((got_units, want_units), (got_stats, want_stats))
        for key in sorted(got.keys() | want.keys())
        if got.get(key) != want.get(key)
    ]
    total = len(want_units) + len(want_stats)
    shown = "\n".join(f"{key}: got {g}, want {w}" for key, g, w in wrong[:20])
    assert not wrong, f"{len(wrong)} of {total} aggregates differ (got, want):\n{shown}"
    # The data set must exercise what it claims to.
    assert any(excluded for _, excluded in want_units.values())
    assert {key[4] for key in want_stats} == {"conversion", "count", "sum"}
