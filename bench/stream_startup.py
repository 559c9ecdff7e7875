"""Stream worker start-up: seconds from spawn to its first progress mark, per engine.

``python -m bench.stream_startup [--engines faust,aiokafka] [--repeat 3] [--events 2000]``
(broker from ``LIFTSTREAM_BOOTSTRAP``): each run puts ``--events`` events on a fresh
namespace first, spawns one ``python -m services.stream`` worker and times its first
progress mark on the aggregates topic (imports, the control-topic follower catching up,
the group join, restoring, the first fetch and publication) and the mark covering every
message. The engines alternate within each repeat, so each is the other's baseline on
this shared machine. Prints each run and the median per engine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.bulk_produce import produce_bulk
from bench.stream_rate import (
    ProgressFollower,
    Worker,
    bench_messages,
    delete_namespace,
    follow_until,
    fresh_settings,
)


def one_run(bootstrap: str, engine: str, events: int) -> tuple[float, float]:
    """(spawn -> first mark, spawn -> every message covered), in seconds."""
    settings = fresh_settings(bootstrap, "startup")
    try:
        messages, _units = bench_messages(settings, events)
        produce_bulk(bootstrap, messages)
        follower = ProgressFollower(settings)
        worker = Worker(settings, engine=engine)
        try:
            run = follow_until(worker, follower, len(messages), timeout=120.0)
        finally:
            worker.stop()
            follower.close()
        return run.first_mark_at - worker.spawned_at, run.done_at - worker.spawned_at
    finally:
        delete_namespace(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="faust,aiokafka")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
    if not bootstrap:
        raise SystemExit("set LIFTSTREAM_BOOTSTRAP to a running broker")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    firsts: dict[str, list[float]] = {engine: [] for engine in engines}
    for repeat in range(args.repeat):
        for engine in engines:
            started = time.perf_counter()
            first, done = one_run(bootstrap, engine, args.events)
            firsts[engine].append(first)
            took = time.perf_counter() - started
            print(
                f"run {repeat + 1} {engine:>8}: first progress mark {first:.2f}s after spawn, "
                f"all {args.events:,} events {done:.2f}s (run {took:.1f}s)",
                flush=True,
            )
    for engine, values in firsts.items():
        print(f"{engine:>8}: median spawn -> first progress mark {statistics.median(values):.2f}s")


if __name__ == "__main__":
    main()
