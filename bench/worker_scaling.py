"""Stream throughput with 1, 2 and 4 workers in one consumer group on 12 partitions.

``python -m bench.worker_scaling [--events 300000] [--workers 1 2 4]`` (broker from
``LIFTSTREAM_BOOTSTRAP``). For each worker count, in one run: a fresh namespace with 12
event partitions gets the same events first (``bench.stream_rate.bench_messages``), then
that many ``python -m services.stream`` workers start together. The rate is counted from
the moment the group is stable with all of them (every worker owns its share) to the
progress mark covering the end offsets, over the events processed in that window; the
time from spawn to done is printed too (start-up and rebalances included). The baseline
is the 1-worker run of the same invocation: each count's rate is printed as a ratio to
it. On a 2-core machine the workers, the broker and this process share two cores: more
than two workers cannot add CPU, only spread partitions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass

from kafka import KafkaAdminClient

from bench.bulk_produce import produce_bulk
from bench.stream_rate import ProgressFollower, Worker, bench_messages, fresh_settings
from services.broker.topics import delete_namespace_topics

PARTITIONS = 12


@dataclass
class Result:
    workers: int
    events: int
    window_events: int
    window_s: float
    spawn_to_done_s: float

    @property
    def rate(self) -> float:
        return self.window_events / self.window_s if self.window_s > 0 else float("nan")


def _group_stable(admin: KafkaAdminClient, group: str, members: int) -> bool:
    described = admin.describe_groups([group])[group]
    return described["group_state"] == "Stable" and len(described["members"]) == members


def run(bootstrap: str, events: int, workers: int, timeout: float) -> Result:
    settings = fresh_settings(bootstrap, f"scale{workers}", PARTITIONS)
    pool: list[Worker] = []
    follower = ProgressFollower(settings)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        messages, _units = bench_messages(settings, events)
        total = produce_bulk(bootstrap, messages)
        spawned_at = time.perf_counter()
        pool.extend(Worker(settings) for _ in range(workers))  # one log file, appended
        group = f"{settings.namespace}-stream"
        stable_at, stable_done = 0.0, 0
        while True:
            done = follower.processed()
            now = time.perf_counter()
            if not stable_at and _group_stable(admin, group, workers):
                stable_at, stable_done = now, done
            if done >= total:
                break
            for worker in pool:
                worker.check_alive()
            if now - spawned_at > timeout:
                raise SystemExit(f"{workers} workers: {done:,} of {total:,} after {timeout:.0f}s")
        if not stable_at:
            stable_at, stable_done = spawned_at, 0
        return Result(workers, total, total - stable_done, now - stable_at, now - spawned_at)
    finally:
        for worker in pool:
            worker.stop()
        follower.close()
        admin.close()
        delete_namespace_topics(bootstrap, settings.namespace)
        shutil.rmtree(settings.home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_scaling")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
    if not bootstrap:
        print("set LIFTSTREAM_BOOTSTRAP to a running broker", file=sys.stderr)
        return 2
    if args.workers[0] != 1:
        args.workers.insert(0, 1)  # the baseline
    results = [run(bootstrap, args.events, count, args.timeout) for count in args.workers]
    baseline = results[0].rate
    print(f"{args.events:,} events on {PARTITIONS} partitions, {os.cpu_count()} cores")
    print("workers  events/s (group stable -> done)  vs 1 worker  spawn -> done")
    for result in results:
        print(
            f"{result.workers:>7}  {result.rate:>12,.0f} ({result.window_events:,} events)"
            f"  {result.rate / baseline:>10.2f}x  {result.spawn_to_done_s:>10.1f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
