"""Cost of Kafka's default partitioner per ``tenant:unit`` key, as this project runs it.

``schemas.partitioning.partition_for`` (compiled with mypyc by ``make setup``) against,
in the same run, the same source run interpreted and kafka-python's pure-Python
``murmur2`` (what its producer runs for every keyed record). Prints µs per key (best of
``--repeat`` passes over ``--keys`` distinct keys) and checks the three agree.

    .venv/bin/python -m bench.partitioner [--keys 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from kafka.partitioner.default import murmur2 as kafka_python_murmur2

import schemas.partitioning as compiled

PARTITIONS = 12


def _interpreted() -> Callable[[bytes, int], int]:
    """The same source, loaded as plain Python whatever is compiled next to it."""
    path = Path(compiled.__file__).with_name("partitioning.py")
    spec = importlib.util.spec_from_file_location("partitioning_interpreted", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.partition_for  # type: ignore[no-any-return]


def _kafka_python(key: bytes, partitions: int) -> int:
    return (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions


def _per_key_us(function: Callable[[bytes, int], int], keys: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for key in keys:
            function(key, PARTITIONS)
        best = min(best, time.perf_counter() - started)
    return best / len(keys) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    keys = [f"tenant-{n % 7}:user-{n:08d}".encode() for n in range(args.keys)]
    interpreted = _interpreted()
    sample = keys[:2000]
    assert (
        [compiled.partition_for(k, PARTITIONS) for k in sample]
        == [_kafka_python(k, PARTITIONS) for k in sample]
        == [interpreted(k, PARTITIONS) for k in sample]
    )
    is_compiled = not compiled.__file__.endswith(".py")
    rows = [
        (
            "schemas.partitioning" + (" (mypyc)" if is_compiled else " (NOT compiled)"),
            compiled.partition_for,
        ),
        ("schemas.partitioning interpreted", interpreted),
        ("kafka-python murmur2 (baseline)", _kafka_python),
    ]
    results = [(name, _per_key_us(function, keys, args.repeat)) for name, function in rows]
    baseline = results[-1][1]
    print(f"{args.keys} keys like {keys[0].decode()!r}, best of {args.repeat}")
    for name, micros in results:
        print(f"  {name:42s} {micros:7.3f} µs/key  ({baseline / micros:5.1f}x baseline)")


if __name__ == "__main__":
    main()
