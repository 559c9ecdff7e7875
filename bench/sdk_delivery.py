"""SDK delivery: ``track`` over HTTP (the collector) beside ``track`` straight to Kafka.

``python -m bench.sdk_delivery [--events 20000]`` needs a broker (``LIFTSTREAM_BOOTSTRAP``).
It creates a fresh topic namespace and tenant, starts ``python -m services.collector`` and
sends the same number of outcome events through ``LiftstreamClient`` three ways:

1. ``delivery="kafka"`` (the baseline: kafka-python, acks=all, idempotent);
2. ``delivery="http"`` to the running collector (a queue holding all the events);
3. ``delivery="http"`` to a collector that is down (a closed port), default options:
   what ``track`` costs the caller while every request fails and the bounded queue
   drops the oldest events.

For each it prints the caller's cost per ``track`` call (p50, p99, max) and, for the
first two, the rate from the first call until ``flush`` returned (every event stored).
The namespace's topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from bench.collector_rate import start_collector, wait_until_key_known
from liftstream.client import LiftstreamClient
from liftstream.errors import DeliveryError
from liftstream.http_transport import HttpTransport
from liftstream.settings import load_settings
from liftstream.tenants import bootstrap_tenant
from services.broker.topics import delete_namespace_topics, ensure_topics

TENANT = "bench"


@dataclass(frozen=True)
class Run:
    name: str
    call_s: list[float]
    total_s: float | None
    note: str = ""

    def line(self) -> str:
        ordered = sorted(self.call_s)
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        rate = f"{len(ordered) / self.total_s:>8,.0f} events/s" if self.total_s else " " * 17
        return (
            f"{self.name:<30} {rate}   track p50 {statistics.median(ordered) * 1e6:5.1f} us"
            f"  p99 {p99 * 1e6:6.1f} us  max {ordered[-1] * 1e3:6.1f} ms  {self.note}"
        )


def send(client: LiftstreamClient, events: int, name: str, flush: bool) -> Run:
    calls: list[float] = []
    started = time.perf_counter()
    for index in range(events):
        before = time.perf_counter()
        client.track(f"user-{index}", "purchase", value=1.5)
        calls.append(time.perf_counter() - before)
    total = None
    if flush:
        client.flush(timeout=300)
        total = time.perf_counter() - started
    note = ""
    if isinstance(client.transport, HttpTransport):
        stats = client.transport.stats
        note = f"accepted {stats.accepted}, dropped {stats.dropped}, retries {stats.retries}"
    return Run(name, calls, total, note)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_delivery", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    base = load_settings()
    if not base.bootstrap:
        print("set LIFTSTREAM_BOOTSTRAP to a running broker", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="liftstream-bench-"))
    settings = replace(base, namespace=f"bs{uuid.uuid4().hex[:8]}", home=home)
    ensure_topics(settings.bootstrap, settings.topics)
    key = bootstrap_tenant(settings, TENANT).key.secret_key
    env = {
        **os.environ,
        "LIFTSTREAM_NAMESPACE": settings.namespace,
        "LIFTSTREAM_HOME": str(home),
        "LIFTSTREAM_COLLECTOR_RATE": "10000000",
        "LIFTSTREAM_COLLECTOR_BURST": "10000000",
        "PYTHONUNBUFFERED": "1",
    }
    process, url = start_collector(env, home / "collector.log")
    runs: list[Run] = []
    try:
        wait_until_key_known(url, key)
        kafka = LiftstreamClient(TENANT, settings.bootstrap, settings.namespace)
        with kafka:
            send(kafka, 1000, "warm-up", flush=True)
            runs.append(send(kafka, args.events, "kafka (baseline)", flush=True))
        # A queue that holds the whole burst: the rate of delivery, not of dropping.
        queue = args.events + 1000
        http = LiftstreamClient(TENANT, delivery=HttpTransport(url, key, max_queue_events=queue))
        with http:
            send(http, 1000, "warm-up", flush=True)
            runs.append(send(http, args.events, "http, collector up", flush=True))
    finally:
        process.terminate()
        process.wait(30)
    down = LiftstreamClient(
        TENANT, delivery="http", collector_url=f"http://127.0.0.1:{closed_port()}", api_key=key
    )
    runs.append(send(down, args.events, "http, collector down", flush=False))
    with contextlib.suppress(DeliveryError):  # expected: nothing could be delivered
        down.close(timeout=0)

    print(f"{args.events} outcome events through LiftstreamClient.track, broker {base.bootstrap}")
    for run in runs:
        print(run.line())
    kafka_rate = args.events / (runs[0].total_s or 1)
    http_rate = args.events / (runs[1].total_s or 1)
    print(f"http / kafka delivery rate: {http_rate / kafka_rate:.0%}")

    delete_namespace_topics(settings.bootstrap, settings.namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
