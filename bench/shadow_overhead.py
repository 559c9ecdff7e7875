"""Shadow tests: what running shadows costs the caller, beside the same calls without them.

``python -m bench.shadow_overhead [--calls 10000] [--sample 0.05] [--io-ms 1]
[--cpu-loops 300] [--workers 2]`` needs a broker (``LIFTSTREAM_BOOTSTRAP``); it creates a
fresh topic namespace (deleted afterwards).

A simulated handler does some Python work (``--cpu-loops`` iterations) and waits on I/O
(``--io-ms``, a sleep standing for a database call); the candidate is a second version of
it (same cost, a different result on 1% of inputs). In the same process, interleaved in
blocks of 100 calls in a seeded random order, so that the machine's load drifts over all
modes alike:

- ``baseline``: the handler called directly;
- ``shadow``: ``client.shadow(...)`` with ``--sample`` (the noise share its default,
  ``sample / 2``), observations sent to Kafka by the SDK's background thread;
- ``shadow x5``: the same with five times the sample, to show the trend.

Printed per mode: the caller's latency p50 and p99 (µs), and p99 / baseline p99 with a
seeded bootstrap 95% interval over the calls; and the shadows run, dropped and logged.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Callable

import numpy as np

from liftstream.client import LiftstreamClient
from liftstream.settings import load_settings
from liftstream.shadow import ShadowPool
from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics

BLOCK = 100


def handler(x: int, cpu_loops: int, io_s: float, version: int = 1) -> int:
    total = 0
    for i in range(cpu_loops):
        total += i * x & 7
    time.sleep(io_s)
    return total + (version == 2 and x % 100 == 0)


def _p99_ratio(calls: np.ndarray, baseline: np.ndarray, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    ratio = float(np.quantile(calls, 0.99) / np.quantile(baseline, 0.99))
    draws = [
        np.quantile(rng.choice(calls, len(calls)), 0.99)
        / np.quantile(rng.choice(baseline, len(baseline)), 0.99)
        for _ in range(1000)
    ]
    low, high = np.quantile(draws, [0.025, 0.975])
    return ratio, float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls per mode")
    parser.add_argument("--sample", type=float, default=0.05)
    parser.add_argument("--io-ms", type=float, default=1.0)
    parser.add_argument("--cpu-loops", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="shadow worker threads")
    args = parser.parse_args()
    settings = load_settings()
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    topics = TopicCatalog(namespace=namespace, event_partitions=settings.partitions)
    ensure_topics(settings.bootstrap, topics)
    io_s = args.io_ms / 1000
    try:
        with LiftstreamClient(
            "bench",
            settings.bootstrap,
            namespace,
            shadow_pool=ShadowPool(workers=args.workers, seed=1),
        ) as client:
            modes: dict[str, Callable[[int], int]] = {
                "baseline": lambda x: handler(x, args.cpu_loops, io_s),
                "shadow": lambda x: client.shadow(
                    "bench",
                    lambda: handler(x, args.cpu_loops, io_s),
                    lambda: handler(x, args.cpu_loops, io_s, 2),
                    sample=args.sample,
                ),
                "shadow x5": lambda x: client.shadow(
                    "bench-x5",
                    lambda: handler(x, args.cpu_loops, io_s),
                    lambda: handler(x, args.cpu_loops, io_s, 2),
                    sample=min(args.sample * 5, 0.6),
                ),
            }
            latencies: dict[str, list[float]] = {name: [] for name in modes}
            shuffle = np.random.default_rng(7)
            for block in range(0, args.calls, BLOCK):
                order = [list(modes)[i] for i in shuffle.permutation(len(modes))]
                for name in order:
                    call, found = modes[name], latencies[name]
                    for x in range(block, min(block + BLOCK, args.calls)):
                        start = time.perf_counter()
                        call(x)
                        found.append(time.perf_counter() - start)
            client.shadows.wait_idle(30)
            client.flush(60)
            stats = dict(client.shadows.stats)
    finally:
        with contextlib.suppress(Exception):
            delete_namespace_topics(settings.bootstrap, namespace)
    baseline = np.array(latencies["baseline"]) * 1e6
    print(
        f"{args.calls} calls per mode; handler: {args.cpu_loops} loop iterations + "
        f"{args.io_ms} ms I/O; sample {args.sample} (x5: {min(args.sample * 5, 0.6)})"
    )
    print(f"{'mode':<10} {'p50 µs':>8} {'p99 µs':>8} {'p99 / baseline [95% CI]':>28}  shadows")
    for seed, (name, found) in enumerate(latencies.items()):
        calls = np.array(found) * 1e6
        ratio, low, high = _p99_ratio(calls, baseline, seed)
        key = {"shadow": "bench", "shadow x5": "bench-x5"}.get(name)
        shadows = ""
        if key in stats:
            s = stats[key]
            shadows = (
                f"candidate {s.candidate_runs}, secondary {s.secondary_runs}, "
                f"dropped {s.dropped}, logged {s.logged}"
            )
        print(
            f"{name:<10} {np.median(calls):8.1f} {np.quantile(calls, 0.99):8.1f} "
            f"{ratio:10.3f} [{low:.3f}, {high:.3f}]  {shadows}"
        )


if __name__ == "__main__":
    main()
