"""SDK delivery: ``track`` straight to Kafka beside a bare producer, and over HTTP.

``python -m bench.sdk_delivery [--events 200000] [--http-events 20000]`` needs a broker
(``LIFTSTREAM_BOOTSTRAP``). It creates a fresh topic namespace and tenant, and:

1. baseline: a bare kafka-python producer (acks=all, idempotent, linger 5 ms) sending
   the same ``--events`` outcome events, serialised beforehand, one record per event
   keyed ``tenant:unit``: the rate from the first send until ``flush`` returned;
2. ``delivery="kafka"`` (the SDK's default): ``--events`` ``track`` calls in one thread
   (the SDK's own background thread batches them per partition), then ``flush``;
3. ``delivery="http"`` to a running ``python -m services.collector`` (a queue holding
   all the events), ``--http-events`` calls;
4. ``delivery="http"`` to a collector that is down (a closed port), default options:
   what ``track`` costs the caller while every request fails and the bounded queue
   drops the oldest events.

For each SDK run it prints the caller's cost per ``track`` call (p50, p99, max), the
rate from the first call until ``flush`` returned (every event acknowledged), and how
long after the last call that was. The namespace's topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import time
from dataclasses import dataclass

from bench.collector_rate import settings_from_environment, start_collector, wait_until_key_known
from liftstream.client import LiftstreamClient
from liftstream.errors import DeliveryError
from liftstream.events import fast_outcome
from liftstream.http_transport import HttpTransport
from liftstream.producer import create_producer
from liftstream.settings import Settings
from liftstream.transport import KafkaTransport
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.control_domain.tenants import bootstrap_tenant

TENANT = "bench"


@dataclass(frozen=True)
class Run:
    name: str
    call_s: list[float]
    total_s: float | None
    note: str = ""
    after_last_s: float | None = None

    @property
    def p50(self) -> float:
        return statistics.median(self.call_s)

    @property
    def p99(self) -> float:
        ordered = sorted(self.call_s)
        return ordered[int(0.99 * (len(ordered) - 1))]

    def line(self) -> str:
        rate = f"{len(self.call_s) / self.total_s:>8,.0f} events/s" if self.total_s else " " * 17
        after = (
            "" if self.after_last_s is None else f"  acked {self.after_last_s:4.2f} s after last"
        )
        return (
            f"{self.name:<30} {rate}   track p50 {self.p50 * 1e6:5.1f} us"
            f"  p99 {self.p99 * 1e6:6.1f} us  max {max(self.call_s) * 1e3:6.1f} ms{after}"
            f"  {self.note}"
        )


def send(client: LiftstreamClient, events: int, name: str, flush: bool) -> Run:
    calls = [0.0] * events
    units = [f"user-{index}" for index in range(events)]
    track = client.track
    clock = time.perf_counter
    started = clock()
    for index in range(events):
        before = clock()
        track(units[index], "purchase", 1.5)
        calls[index] = clock() - before
    last = clock()
    total = after = None
    if flush:
        client.flush(timeout=300)
        total = clock() - started
        after = clock() - last
    note = ""
    if isinstance(client.transport, HttpTransport):
        stats = client.transport.stats
        note = f"accepted {stats.accepted}, dropped {stats.dropped}, retries {stats.retries}"
    elif isinstance(client.transport, KafkaTransport):
        transport = client.transport
        note = f"acked {transport.acked}, dropped {transport.dropped}"
    return Run(name, calls, total, note, after)


def bare_producer_rate(settings: Settings, events: int) -> float:
    """Events/s of a bare kafka-python producer sending the same events, serialised
    beforehand, one record per event (acks=all, idempotent, as the SDK's)."""
    values = []
    for index in range(events):
        event = fast_outcome(TENANT, f"user-{index}", "purchase", 1.5, None, None)
        assert event is not None
        values.append((event.partition_key, event.to_json()))
    producer = create_producer(settings.bootstrap, client_id="bench-bare")
    topic = settings.topics.outcomes
    try:
        producer.send(topic, value=values[0][1], key=values[0][0])
        producer.flush(60)  # connected, metadata known
        started = time.perf_counter()
        for key, value in values:
            producer.send(topic, value=value, key=key)
        producer.flush(300)
        return events / (time.perf_counter() - started)
    finally:
        producer.close(10)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_delivery", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--http-events", type=int, default=20_000)
    args = parser.parse_args(argv)
    settings = settings_from_environment("bs")
    home = settings.home
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
    bare_rate = bare_producer_rate(settings, args.events)
    with LiftstreamClient(TENANT, settings.bootstrap, settings.namespace) as kafka:
        send(kafka, 1000, "warm-up", flush=True)
        sdk = send(kafka, args.events, "kafka (SDK batches)", flush=True)
    process, url = start_collector(env, home / "collector.log")
    runs: list[Run] = [sdk]
    try:
        wait_until_key_known(url, key)
        # A queue that holds the whole burst: the rate of delivery, not of dropping.
        queue = args.http_events + 1000
        http = LiftstreamClient(TENANT, delivery=HttpTransport(url, key, max_queue_events=queue))
        with http:
            send(http, 1000, "warm-up", flush=True)
            runs.append(send(http, args.http_events, "http, collector up", flush=True))
    finally:
        process.terminate()
        process.wait(30)
    down = LiftstreamClient(
        TENANT, delivery="http", collector_url=f"http://127.0.0.1:{closed_port()}", api_key=key
    )
    runs.append(send(down, args.http_events, "http, collector down", flush=False))
    with contextlib.suppress(DeliveryError):  # expected: nothing could be delivered
        down.close(timeout=0)

    print(f"outcome events through LiftstreamClient.track, broker {settings.bootstrap}")
    print(
        f"{'bare kafka-python (baseline)':<30} {bare_rate:>8,.0f} events/s   one record per event"
    )
    for run in runs:
        print(run.line())
    sdk_rate = args.events / (sdk.total_s or 1)
    print(
        f"SDK kafka: {args.events} calls, p50 {sdk.p50 * 1e6:.1f} us (<= 5), "
        f"p99 {sdk.p99 * 1e6:.1f} us (<= 50), acked {sdk.after_last_s or 0:.2f} s after the "
        f"last call (<= 2), {sdk_rate:,.0f} events/s (>= 50,000), "
        f"{sdk_rate / bare_rate:.1f}x the bare producer"
    )

    delete_namespace_topics(settings.bootstrap, settings.namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
