"""Collector ingest rate (batches of 500 events over HTTP) beside a bare kafka-python producer.

``python -m bench.collector_rate [--batches 100] [--batch-size 500] [--clients 4]
[--round 10]`` needs a broker (``LIFTSTREAM_BOOTSTRAP``). It creates two fresh topic
namespaces, a tenant and its key, starts ``python -m services.collector`` and sends
``--batches`` batches of fresh events each way, each batch waiting for the broker's
acknowledgement before the next:

1. the collector, one HTTP client, batch after batch (latency of a request); the client
   is the standard library's ``http.client`` on one kept-alive connection, whose own
   cost (~0.4 ms of CPU a request here) is small beside the collector's;
2. the baseline: a bare kafka-python producer (acks=all, idempotent) sending the events
   of run 1 already serialised as the collector writes them (one JSON array per
   partition, the partition Kafka's default partitioner gives ``tenant:unit``),
   ``flush()`` after each batch;
3. for information, a bare confluent-kafka (librdkafka) producer, the collector's own
   client, sending the same messages the same way (acks=all, idempotent, ``flush()``);
4. the collector through ``httpx`` (``httpx.Client``, kept alive), for reference: ~1 ms
   of CPU a request in the client, on the same 2 cores as the collector and the broker;
5. the collector, ``--clients`` ``http.client`` clients at once (throughput).

Runs 1 to 3 take turns, ``--round`` batches each, so that the machine's and the shared
broker's load (which moved the baseline by 3x between runs seconds apart) weighs on the
collector and its baseline alike; each one's rate is its events over the time its own
batches took. Every request body is serialised ahead, and the collector answers only
once the broker acknowledged every event of the request (acks=all), as ``flush()`` waits
for the baseline's. It prints events/s, p50 and p99 per batch, and the
collector/baseline ratio.
The namespaces' topics are deleted afterwards. Tenant isolation under a flood is
measured by ``bench/collector_isolation.py``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Producer
from kafka import KafkaProducer

from liftstream.settings import Settings, load_settings
from schemas.partitioning import partition_for
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.collector.sink import as_batch_messages, producer_settings
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


class StdlibClient:
    """One kept-alive ``http.client`` connection posting batch bodies."""

    def __init__(self, url: str, key: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, body: bytes) -> tuple[int, bytes]:
        self._connection.request("POST", "/v1/events", body=body, headers=self._headers)
        answer = self._connection.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self._connection.close()


class HttpxClient:
    """An ``httpx.Client`` (kept alive) posting batch bodies."""

    def __init__(self, url: str, key: str) -> None:
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=60,
        )

    def post(self, body: bytes) -> tuple[int, bytes]:
        answer = self._client.post("/v1/events", content=body)
        return answer.status_code, answer.content

    def close(self) -> None:
        self._client.close()


def collector_run(
    client: Callable[[], StdlibClient | HttpxClient],
    bodies: list[bytes],
    per_batch: int,
    clients: int,
    name: str,
) -> Run:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    pending = list(enumerate(bodies))

    def worker() -> None:
        http = client()
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    _, body = pending.pop()
                started = time.perf_counter()
                status, answer = http.post(body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if status != 202:
                        failures.append(f"{status} {answer[:200]!r}")
        finally:
            http.close()

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


def serialised_ahead(
    batches: list[list[bytes]], keys: list[list[bytes]], partitions: int
) -> list[list[tuple[int, bytes]]]:
    """Each batch as the collector writes it: (partition, JSON array) per partition."""
    messages: list[list[tuple[int, bytes]]] = []
    for values, batch_keys in zip(batches, keys, strict=True):
        by_partition: dict[int, list[bytes]] = {}
        for key, value in zip(batch_keys, values, strict=True):
            by_partition.setdefault(partition_for(key, partitions), []).append(value)
        messages.append(
            [
                (partition, value)
                for partition, group in by_partition.items()
                for _, value in as_batch_messages(group)
            ]
        )
    return messages


class KafkaPythonBaseline:
    """The baseline: a bare kafka-python producer, ``flush()`` after each batch."""

    name = "bare kafka-python producer, same batches"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        self.partitions = len(self._producer.partitions_for(topic))

    def send(self, batch: list[tuple[int, bytes]]) -> None:
        for partition, value in batch:
            self._producer.send(self.topic, value=value, partition=partition)
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


class ConfluentBareProducer:
    """For information: a bare confluent-kafka producer (the collector's client library,
    with the collector's settings), ``flush()`` after each batch."""

    name = "bare confluent-kafka producer (information)"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(producer_settings(bootstrap, "bench-confluent"))

    def send(self, batch: list[tuple[int, bytes]]) -> None:
        for partition, value in batch:
            self._producer.produce(self.topic, value, None, partition)
        if self._producer.flush(30):
            raise RuntimeError("the bare confluent-kafka producer's batch was not acknowledged")

    def close(self) -> None:
        self._producer.flush(30)


def taking_turns(
    client: StdlibClient,
    bodies: list[bytes],
    per_batch: int,
    producers: list[KafkaPythonBaseline | ConfluentBareProducer],
    messages: list[list[tuple[int, bytes]]],
    round_size: int,
) -> list[Run]:
    """The collector (one client) and each producer, ``round_size`` batches in turn."""
    timings: list[list[float]] = [[] for _ in range(1 + len(producers))]
    failures: list[str] = []
    for start in range(0, len(bodies), round_size):
        for body in bodies[start : start + round_size]:
            began = time.perf_counter()
            status, answer = client.post(body)
            timings[0].append(time.perf_counter() - began)
            if status != 202:
                failures.append(f"{status} {answer[:200]!r}")
        for number, producer in enumerate(producers, 1):
            for batch in messages[start : start + round_size]:
                began = time.perf_counter()
                producer.send(batch)
                timings[number].append(time.perf_counter() - began)
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, e.g. {failures[0]}")
    names = ["collector, 1 client", *(producer.name for producer in producers)]
    return [
        Run(name, len(latencies) * per_batch, sum(latencies), latencies)
        for name, latencies in zip(names, timings, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector_rate", description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--round", type=int, default=10, help="batches of each run before the next's turn"
    )
    args = parser.parse_args(argv)
    collector_settings = settings_from_environment("bc")
    baseline_settings = replace(collector_settings, namespace=f"bb{uuid.uuid4().hex[:8]}")
    home = collector_settings.home
    for each in (collector_settings, baseline_settings):
        ensure_topics(each.bootstrap, each.topics)
    key = bootstrap_tenant(collector_settings, TENANT).key.secret_key

    # Fresh events for each run (warm-up, 1 client, httpx, N clients); the baseline sends
    # those of the 1-client run again, to its own namespace.
    runs = [make_batches(count, args.batch_size) for count in (5, *[args.batches] * 3)]
    warmup, sequential_batches, httpx_batches, parallel_batches = (
        [orjson.dumps({"events": batch}) for batch in batches] for batches in runs
    )
    # What the collector writes for these events, serialised ahead for the baseline.
    received = datetime.now(UTC).isoformat()
    values = [
        [orjson.dumps({**event, "tenant_id": TENANT, "received_at": received}) for event in batch]
        for batch in runs[1]
    ]
    keys = [[f"{TENANT}:{event['unit_id']}".encode() for event in batch] for batch in runs[1]]

    env = {
        **os.environ,
        "LIFTSTREAM_NAMESPACE": collector_settings.namespace,
        "LIFTSTREAM_HOME": str(home),
        "LIFTSTREAM_COLLECTOR_RATE": "10000000",
        "LIFTSTREAM_COLLECTOR_BURST": "10000000",
        "PYTHONUNBUFFERED": "1",
    }
    topic = baseline_settings.topics.outcomes
    baseline = KafkaPythonBaseline(collector_settings.bootstrap, topic)
    confluent = ConfluentBareProducer(collector_settings.bootstrap, topic)
    messages = serialised_ahead(values, keys, baseline.partitions)
    process, url = start_collector(env, home / "collector.log")
    stdlib = partial(StdlibClient, url, key)
    try:
        wait_until_key_known(url, key)
        collector_run(stdlib, warmup, args.batch_size, 1, "warm-up")
        for producer in (baseline, confluent):  # connected and warm, as the collector
            producer.send(messages[0])
        client = stdlib()
        try:
            sequential, bare, bare_confluent = taking_turns(
                client,
                sequential_batches,
                args.batch_size,
                [baseline, confluent],
                messages,
                args.round,
            )
        finally:
            client.close()
        through_httpx = collector_run(
            partial(HttpxClient, url, key),
            httpx_batches,
            args.batch_size,
            1,
            "collector, 1 client (httpx)",
        )
        parallel = collector_run(
            stdlib,
            parallel_batches,
            args.batch_size,
            args.clients,
            f"collector, {args.clients} clients",
        )
    finally:
        process.terminate()
        process.wait(30)
        baseline.close()
        confluent.close()

    print(
        f"{args.batches} batches of {args.batch_size} events into {collector_settings.bootstrap}"
        f" (collector and bare producers in turns of {args.round} batches)"
    )
    for run in (sequential, bare, bare_confluent, through_httpx, parallel):
        print(run.line())
    print(
        f"collector, 1 client: {sequential.rate:,.0f} events/s (target >= 50,000), "
        f"{sequential.rate / bare.rate:.0%} of the bare kafka-python producer (target >= 80%); "
        f"{args.clients} clients: {parallel.rate / bare.rate:.0%}; "
        f"bare confluent-kafka: {bare_confluent.rate / bare.rate:.0%}"
    )

    delete_namespace_topics(
        collector_settings.bootstrap, collector_settings.namespace, baseline_settings.namespace
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
