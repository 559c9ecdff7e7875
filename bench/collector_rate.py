"""Collector ingest rate (batches of 500 events over HTTP) beside a bare kafka-python producer.

``python -m bench.collector_rate [--batches 100] [--batch-size 500] [--clients 4]`` needs
a broker (``LIFTSTREAM_BOOTSTRAP``). It creates two fresh topic namespaces, a tenant and
its key, starts ``python -m services.collector`` and sends the same events three ways,
each batch waiting for the broker's acknowledgement before the next:

1. the collector, one HTTP client, batch after batch (latency of a request);
2. the collector, ``--clients`` HTTP clients at once (throughput);
3. a bare kafka-python producer (acks=all, idempotent) sending the same batches already
   serialised as the collector writes them (one JSON array per partition, the partition
   Kafka's default partitioner gives ``tenant:unit``), ``flush()`` after each batch (the
   baseline).

It prints events/s, p50 and p99 per batch, and the collector/baseline ratio. The
namespaces' topics are deleted afterwards. Tenant isolation under a flood is measured
by ``bench/collector_isolation.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from kafka import KafkaProducer

from liftstream.settings import Settings, load_settings
from schemas.partitioning import partition_for
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.collector.sink import as_batch_messages
from services.control_domain.tenants import bootstrap_tenant

TENANT = "bench"
_READY = re.compile(r"collector ready at (http://\S+)")


@dataclass(frozen=True)
class Run:
    name: str
    events: int
    seconds: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        ordered = sorted(self.latencies_s)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (
            f"{self.name:<44} {self.rate:>10,.0f} events/s   "
            f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"
        )


def make_batches(batches: int, size: int) -> list[list[dict[str, object]]]:
    now = datetime.now(UTC).isoformat()
    return [
        [
            {
                "type": "outcome",
                "event_id": str(uuid.uuid4()),
                "unit_id": f"user-{b}-{i}",
                "timestamp": now,
                "event": "purchase",
                "value": 1.0 + i % 7,
            }
            for i in range(size)
        ]
        for b in range(batches)
    ]


def settings_from_environment(prefix: str) -> Settings:
    """The environment's settings with a namespace of their own (``prefix`` and 8 hex
    digits) and a fresh home; exits with status 2 when no broker is named."""
    settings = load_settings()
    if not settings.bootstrap:
        print("set LIFTSTREAM_BOOTSTRAP to a running broker", file=sys.stderr)
        raise SystemExit(2)
    home = Path(tempfile.mkdtemp(prefix="liftstream-bench-"))
    return replace(settings, namespace=f"{prefix}{uuid.uuid4().hex[:8]}", home=home)


def start_collector(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.collector", "--port", "0", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = _READY.search(log_path.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the collector did not start:\n{log_path.read_text(errors='replace')}")


def wait_until_key_known(url: str, key: str) -> None:
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {key}"}
    while httpx.post(f"{url}/v1/events", content=b"", headers=headers).status_code == 401:
        if time.monotonic() > deadline:
            raise RuntimeError("the collector never learned the bench keys")
        time.sleep(0.2)


def collector_run(
    url: str, key: str, bodies: list[bytes], per_batch: int, clients: int, name: str
) -> Run:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    pending = list(enumerate(bodies))

    def worker() -> None:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    _, body = pending.pop()
                started = time.perf_counter()
                answer = http.post(
                    "/v1/events", content=body, headers={"Content-Type": "application/json"}
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if answer.status_code != 202:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, e.g. {failures[0]}")
    return Run(name, len(bodies) * per_batch, seconds, latencies)


def baseline_run(
    bootstrap: str, topic: str, batches: list[list[bytes]], keys: list[list[bytes]]
) -> Run:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    count = len(producer.partitions_for(topic))
    # Serialised ahead as the collector writes them: a JSON array per partition.
    messages: list[list[tuple[int, bytes]]] = []
    for values, batch_keys in zip(batches, keys, strict=True):
        by_partition: dict[int, list[bytes]] = {}
        for key, value in zip(batch_keys, values, strict=True):
            by_partition.setdefault(partition_for(key, count), []).append(value)
        messages.append(
            [
                (partition, value)
                for partition, group in by_partition.items()
                for _, value in as_batch_messages(group)
            ]
        )
    latencies: list[float] = []
    try:
        started = time.perf_counter()
        for batch in messages:
            batch_started = time.perf_counter()
            for partition, value in batch:
                producer.send(topic, value=value, partition=partition)
            producer.flush()
            latencies.append(time.perf_counter() - batch_started)
        seconds = time.perf_counter() - started
    finally:
        producer.close()
    events = sum(len(values) for values in batches)
    return Run("bare kafka-python producer, same batches", events, seconds, latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector_rate", description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    collector_settings = settings_from_environment("bc")
    baseline_settings = replace(collector_settings, namespace=f"bb{uuid.uuid4().hex[:8]}")
    home = collector_settings.home
    for each in (collector_settings, baseline_settings):
        ensure_topics(each.bootstrap, each.topics)
    key = bootstrap_tenant(collector_settings, TENANT).key.secret_key

    batches = make_batches(args.batches, args.batch_size)
    bodies = [orjson.dumps({"events": batch}) for batch in batches]
    # What the collector writes for these events, serialised ahead for the baseline.
    received = datetime.now(UTC).isoformat()
    values = [
        [orjson.dumps({**event, "tenant_id": TENANT, "received_at": received}) for event in batch]
        for batch in batches
    ]
    keys = [[f"{TENANT}:{event['unit_id']}".encode() for event in batch] for batch in batches]

    env = {
        **os.environ,
        "LIFTSTREAM_NAMESPACE": collector_settings.namespace,
        "LIFTSTREAM_HOME": str(home),
        "LIFTSTREAM_COLLECTOR_RATE": "10000000",
        "LIFTSTREAM_COLLECTOR_BURST": "10000000",
        "PYTHONUNBUFFERED": "1",
    }
    process, url = start_collector(env, home / "collector.log")
    try:
        wait_until_key_known(url, key)
        collector_run(url, key, bodies[:5], args.batch_size, 1, "warm-up")
        half = len(bodies) // 2
        sequential = collector_run(
            url, key, bodies[5 : 5 + half], args.batch_size, 1, "collector, 1 client"
        )
        parallel = collector_run(
            url,
            key,
            bodies[5 + half :],
            args.batch_size,
            args.clients,
            f"collector, {args.clients} clients",
        )
    finally:
        process.terminate()
        process.wait(30)
    baseline = baseline_run(
        collector_settings.bootstrap, baseline_settings.topics.outcomes, values, keys
    )

    print(f"{args.batches} batches of {args.batch_size} events into {collector_settings.bootstrap}")
    for run in (sequential, parallel, baseline):
        print(run.line())
    print(
        f"collector, 1 client: {sequential.rate:,.0f} events/s (target >= 50,000), "
        f"{sequential.rate / baseline.rate:.0%} of the bare producer (target >= 80%); "
        f"{args.clients} clients: {parallel.rate / baseline.rate:.0%}"
    )

    delete_namespace_topics(
        collector_settings.bootstrap, collector_settings.namespace, baseline_settings.namespace
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
