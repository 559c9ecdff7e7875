"""Collector ingest rate (batches of 500 events over HTTP) beside a bare kafka-python producer.

``python -m bench.collector_rate [--batches 300] [--batch-size 500] [--clients 4]
[--round 10]`` needs a broker (``LIFTSTREAM_BOOTSTRAP``). It creates two fresh topic
namespaces, a tenant and its key, starts ``python -m services.collector`` and sends
``--batches`` batches of fresh events each way, each batch waiting for the broker's
acknowledgement before the next:

1. the collector, one HTTP client, batch after batch (latency of a request): a minimal
   HTTP/1.1 client on one kept-alive socket sending each request already serialised
   (request line, headers and body, as the baseline's records are), reading the status,
   headers and ``Content-Length`` body of each answer: ~0.03 ms of CPU a request, so
   that the figure is the collector's and not the client's (on the same two cores);
1b. the same through the standard library's ``http.client`` (kept alive), which
   builds the request and parses the answer each time (~0.15 ms of CPU a request);
2. the baseline: a bare kafka-python producer (acks=all, idempotent) sending the events
   of run 1 already serialised as the collector writes them (one JSON array per
   partition, the partition Kafka's default partitioner gives ``tenant:unit``),
   ``flush()`` after each batch;
3. for information, a bare confluent-kafka (librdkafka) producer, the collector's own
   client, sending the same messages the same way (acks=all, idempotent, ``flush()``);
4. the collector, ``--clients`` clients of run 1's kind at once (throughput).

Runs 1, 1b, 2 and 3 take turns, ``--round`` batches each, so that the machine's and the
shared broker's load (which moved the baseline by 3x between runs seconds apart) weighs on the
collector and its baseline alike; each one's rate is its events over the time its own
batches took. Every request body is serialised ahead, and the collector answers only
once the broker acknowledged every event of the request (acks=all), as ``flush()`` waits
for the baseline's. It prints events/s, p50 and p99 per batch, and the
collector/baseline ratio. 300 batches by default: at 100, a single stall of 10 ms (the
machine's; the baseline has them too) moved a run's ratio by up to 20 points.
The namespaces' topics are deleted afterwards. Tenant isolation under a flood is
measured by ``bench/collector_isolation.py``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
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
    return start_collector_command([sys.executable], env, log_path)


def start_collector_command(
    python: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m services.collector`` on a free port; the process and its URL."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*python, "-m", "services.collector", "--port", "0", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
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
    while httpx.post(f"{url}/v1/events", content=b"", headers=headers).status_code in (401, 503):
        if time.monotonic() > deadline:
            raise RuntimeError("the collector never learned the bench keys")
        time.sleep(0.2)


class RawClient:
    """One kept-alive socket posting batch bodies as pre-built HTTP/1.1 requests."""

    def __init__(self, url: str, key: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._socket = socket.create_connection((parts.hostname or "", parts.port or 80), 60)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._pending = b""

    def request_of(self, body: bytes) -> bytes:
        """The whole request for ``body`` (built ahead, like the baseline's records)."""
        return self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def post(self, body: bytes) -> tuple[int, bytes]:
        return self.send(self.request_of(body))

    def send(self, request: bytes) -> tuple[int, bytes]:
        self._socket.sendall(request)
        data = self._pending
        while b"\r\n\r\n" not in data:
            data += self._receive()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += self._receive()
        self._pending = rest[length:]
        return status, rest[:length]

    def _receive(self) -> bytes:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        return chunk

    def close(self) -> None:
        self._socket.close()


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


def collector_run(
    client: Callable[[], RawClient | StdlibClient],
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


@dataclass
class Turn:
    """One run that takes turns: its name and what each of its batches does."""

    name: str
    batches: list[Callable[[], None]]


def client_turn(name: str, client: RawClient | StdlibClient, requests: list[bytes]) -> Turn:
    """Batches that post ``requests`` (pre-built for a ``RawClient``, bodies otherwise)
    and fail on any answer but 202."""

    def batch(request: bytes) -> None:
        status, answer = (
            client.send(request) if isinstance(client, RawClient) else client.post(request)
        )
        if status != 202:
            raise RuntimeError(f"{name}: {status} {answer[:200]!r}")

    return Turn(name, [partial(batch, request) for request in requests])


def producer_turn(
    producer: KafkaPythonBaseline | ConfluentBareProducer, messages: list[list[tuple[int, bytes]]]
) -> Turn:
    return Turn(producer.name, [partial(producer.send, batch) for batch in messages])


def taking_turns(turns: list[Turn], per_batch: int, round_size: int) -> list[Run]:
    """Each turn's batches, ``round_size`` at a time, the turns in order."""
    timings: list[list[float]] = [[] for _ in turns]
    for start in range(0, max(len(turn.batches) for turn in turns), round_size):
        for turn, latencies in zip(turns, timings, strict=True):
            for batch in turn.batches[start : start + round_size]:
                began = time.perf_counter()
                batch()
                latencies.append(time.perf_counter() - began)
    return [
        Run(turn.name, len(latencies) * per_batch, sum(latencies), latencies)
        for turn, latencies in zip(turns, timings, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector_rate", description=__doc__)
    parser.add_argument("--batches", type=int, default=300)
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

    # Fresh events for each run (warm-up, 1 client, 1 client through http.client, N
    # clients); the baseline sends those of the 1-client run again, to its own namespace.
    runs = [make_batches(count, args.batch_size) for count in (5, *[args.batches] * 3)]
    warmup, sequential_batches, stdlib_batches, parallel_batches = (
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
    raw = partial(RawClient, url, key)
    try:
        wait_until_key_known(url, key)
        collector_run(raw, warmup, args.batch_size, 1, "warm-up")
        for producer in (baseline, confluent):  # connected and warm, as the collector
            producer.send(messages[0])
        client, stdlib = raw(), StdlibClient(url, key)
        try:
            stdlib.post(warmup[0])
            sequential, through_stdlib, bare, bare_confluent = taking_turns(
                [
                    client_turn(
                        "collector, 1 client",
                        client,
                        [client.request_of(body) for body in sequential_batches],
                    ),
                    client_turn("collector, 1 client (http.client)", stdlib, stdlib_batches),
                    producer_turn(baseline, messages),
                    producer_turn(confluent, messages),
                ],
                args.batch_size,
                args.round,
            )
        finally:
            client.close()
            stdlib.close()
        parallel = collector_run(
            raw,
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
    for run in (sequential, through_stdlib, bare, bare_confluent, parallel):
        print(run.line())
    print(
        f"collector, 1 client: {sequential.rate:,.0f} events/s (target >= 50,000), "
        f"{sequential.rate / bare.rate:.0%} of the bare kafka-python producer (target >= 80%); "
        f"through http.client {through_stdlib.rate / bare.rate:.0%}; "
        f"{args.clients} clients: {parallel.rate / bare.rate:.0%}; "
        f"bare confluent-kafka: {bare_confluent.rate / bare.rate:.0%}"
    )

    delete_namespace_topics(
        collector_settings.bootstrap, collector_settings.namespace, baseline_settings.namespace
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
