"""Event-to-aggregate latency and catch-up at a fixed send rate: SDK -> Kafka -> stream
worker -> aggregates topic.

``python -m bench.end_to_end_latency [--rate 10000] [--seconds 30] [--engines faust,aiokafka]``
starts a platform per engine (``LIFTSTREAM_STREAM_ENGINE``) in a fresh namespace and data
home (the broker from ``LIFTSTREAM_BOOTSTRAP``), defines an experiment, and has the SDK
send ``--rate`` events/s for ``--seconds`` (each event timestamped by the SDK when it is
tracked: ``track``/``expose`` without a timestamp), then flushes.

The measurement is exact, per event, not sampled:

- a thread reads the aggregates topic live and keeps every progress mark with its
  Kafka timestamp. The worker sends a progress mark (source partition -> next offset of
  each event topic) only once the aggregate records reflecting those offsets have been
  delivered, so the first mark of a partition whose next offset is past a message's
  offset is the publication of every event in that message; the mark's timestamp (taken
  when it is sent, after its aggregates were acknowledged) is that publication time;
- after the run, every message of the event topics is read back; each event's latency
  is its publication time minus its own ``timestamp`` field.

Catch-up: the time from the last ``track`` call to the progress marks covering every
event topic's end offset (read after the flush). The same thread that reads the
aggregates also reads the event topics live: the baseline printed beside each figure is
the latency of a bare consumer receiving the SDK's messages (what the SDK, the broker
and one consumer cost before any stream processing).

Percentiles are over events; ``--warmup`` seconds of events at the start are left out
(the worker's first fetch and the group join are not the steady state); they count in
``max (all)``.
"""

from __future__ import annotations

import argparse
import bisect
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from bench.end_to_end import EVENTS_PER_UNIT, EXPERIMENT
from liftstream.client import LiftstreamClient
from liftstream.producer import ReconnectingProducer, create_producer
from liftstream.settings import load_settings
from liftstream.transport import DEFAULT_LINGER_S, KafkaTransport
from liftstream_cli.control import apply_experiment
from liftstream_cli.platform import PlatformSupervisor
from services.broker.topics import end_offsets, namespace_deleted_afterwards

#: Pacing step: the sender catches up to ``rate * elapsed`` this often.
TICK_S = 0.002


@dataclass
class Watch:
    """What the live reader saw: progress marks and when source messages arrived."""

    #: (topic, partition) -> ascending next offsets, and the matching publication times.
    marks: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    marked_at: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    #: (topic, partition, offset) -> wall time a bare consumer received the message.
    received: dict[tuple[str, int, int], float] = field(default_factory=dict)
    progress_records: int = 0
    #: Kafka timestamps of the progress marks, in order (one publication sends several).
    progress_times: list[float] = field(default_factory=list)
    aggregate_records: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def covered(self, topic: str, partition: int, end: int) -> float | None:
        """When a mark first covered offsets below ``end`` of ``topic[partition]``."""
        with self.lock:
            offsets = self.marks.get((topic, partition), [])
            index = bisect.bisect_left(offsets, end)
            if index == len(offsets):
                return None
            return self.marked_at[(topic, partition)][index]

    def published(self, topic: str, partition: int, offset: int) -> float | None:
        return self.covered(topic, partition, offset + 1)


def watch(
    bootstrap: str, aggregates: str, sources: dict[str, int], stop: threading.Event, into: Watch
) -> None:
    """Read the aggregates topic and the event topics live until ``stop``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        max_poll_records=10_000,
    )
    parts = [TopicPartition(aggregates, 0)]
    parts += [TopicPartition(topic, p) for topic, count in sources.items() for p in range(count)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    try:
        while not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=50).items():
                now = time.time()
                if tp.topic != aggregates:
                    for record in records:
                        into.received[(tp.topic, tp.partition, record.offset)] = now
                    continue
                for record in records:
                    if not (record.key or b"").startswith(b"progress|"):
                        into.aggregate_records += 1
                        continue
                    into.progress_records += 1
                    into.progress_times.append(record.timestamp / 1000)
                    mark = orjson.loads(record.value)
                    partition = mark["source_partition"]
                    with into.lock:
                        for topic, offset in mark["next_offsets"].items():
                            offsets = into.marks.setdefault((topic, partition), [])
                            if offsets and offset <= offsets[-1]:
                                continue  # nothing new on this topic
                            offsets.append(offset)
                            into.marked_at.setdefault((topic, partition), []).append(
                                record.timestamp / 1000
                            )
    finally:
        consumer.close()


def paced_send(client: LiftstreamClient, rate: float, seconds: float) -> tuple[int, float, float]:
    """Send ``rate`` events/s for ``seconds``; (events sent, wall times of the first and
    the last call)."""
    started = time.perf_counter()
    sent = index = 0
    first = last = time.time()
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = int(rate * elapsed)
        while sent + EVENTS_PER_UNIT <= due:
            unit = f"unit-{index}"
            index += 1
            client.expose(EXPERIMENT, unit)
            client.track(unit, "page_view")
            client.track(unit, "page_view")
            if index % 8 == 0:
                client.track(unit, "purchase", 20.0 + index % 50)
            else:
                client.track(unit, "add_to_cart")
            sent += EVENTS_PER_UNIT
            last = time.time()
        time.sleep(TICK_S)
    return sent, first, last


def read_events(
    bootstrap: str, ends: dict[str, dict[int, int]]
) -> Iterator[tuple[str, int, int, float]]:
    """(topic, partition, offset, event timestamp) of every event below ``ends``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
    )
    remaining = {
        TopicPartition(topic, partition): end
        for topic, partitions in ends.items()
        for partition, end in partitions.items()
        if end > 0
    }
    consumer.assign(list(remaining))
    consumer.seek_to_beginning(*remaining)
    try:
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset >= remaining.get(tp, 0):
                        continue
                    value = orjson.loads(record.value)
                    for event in value if isinstance(value, list) else [value]:
                        at = datetime.fromisoformat(event["timestamp"]).timestamp()
                        yield tp.topic, tp.partition, record.offset, at
                if records and records[-1].offset + 1 >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
    finally:
        consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def run_engine(engine: str, args: argparse.Namespace, console: Console) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="liftstream-bench-"))
    os.environ["LIFTSTREAM_HOME"] = str(home)
    os.environ["LIFTSTREAM_NAMESPACE"] = f"bench{uuid.uuid4().hex[:8]}"
    os.environ["LIFTSTREAM_STREAM_ENGINE"] = engine
    settings = load_settings()
    topics = settings.topics
    with (
        namespace_deleted_afterwards(settings.bootstrap, settings.namespace),
        PlatformSupervisor(settings, console) as state,
    ):
        settings = replace(
            settings,
            bootstrap=state.bootstrap,
            control_url=state.control_url,
            api_key=state.api_key,
        )
        apply_experiment(EXPERIMENT, state.tenant, settings, reason="bench")
        sources = {topics.exposures: settings.partitions, topics.outcomes: settings.partitions}
        seen, stop = Watch(), threading.Event()
        reader = threading.Thread(
            target=watch, args=(state.bootstrap, topics.aggregates, sources, stop, seen)
        )
        reader.start()
        try:
            producer = ReconnectingProducer(
                state.bootstrap, lambda: create_producer(state.bootstrap)
            )
            transport = KafkaTransport(
                producer, topics, state.bootstrap, linger_s=args.linger_ms / 1000
            )
            with LiftstreamClient(
                state.tenant, bootstrap=state.bootstrap, delivery=transport
            ) as client:
                # One event first so that metadata lookups are not part of the timed sends.
                client.track("warm-up-unit", "page_view")
                client.flush()
                time.sleep(1.0)
                sent, first_send, last_send = paced_send(client, args.rate, args.seconds)
                client.flush()
                flushed = time.time()
            ends = end_offsets(state.bootstrap, list(sources))
            deadline = time.time() + args.timeout
            caught_up: float | None = None
            while caught_up is None and time.time() < deadline:
                times = [
                    seen.covered(topic, partition, end)
                    for topic, partitions in ends.items()
                    for partition, end in partitions.items()
                    if end > 0
                ]
                if all(t is not None for t in times):
                    caught_up = max(t for t in times if t is not None)
                else:
                    time.sleep(0.05)
            time.sleep(0.5)  # the live reader sees the last source messages too
        finally:
            stop.set()
            reader.join()
        if caught_up is None:
            raise SystemExit(f"{engine}: not caught up {args.timeout:.0f}s after the last send")
        stream, bare, stream_all = [], [], []
        for topic, partition, offset, at in read_events(state.bootstrap, ends):
            published = seen.published(topic, partition, offset)
            if published is None:
                raise SystemExit(f"{engine}: {topic}[{partition}]@{offset} never published")
            stream_all.append(published - at)
            received = seen.received.get((topic, partition, offset))
            if at - first_send < args.warmup:
                continue
            stream.append(published - at)
            if received is not None:
                bare.append(received - at)
    # Progress marks sent within 50 ms of each other belong to one publication.
    publications = [
        t
        for i, t in enumerate(seen.progress_times)
        if i == 0 or t - seen.progress_times[i - 1] > 0.05
    ]
    gaps = [b - a for a, b in pairwise(publications)]
    return {
        "engine": engine,
        "publications": len(publications),
        "gaps": percentiles(gaps),
        "sent": sent,
        "events": len(stream_all),
        "messages": sum(end for partitions in ends.values() for end in partitions.values()),
        "stream": percentiles(stream),
        "bare": percentiles(bare),
        "max_all": max(stream_all),
        "caught_up": caught_up - last_send,
        "flushed": flushed - last_send,
        "progress_records": seen.progress_records,
        "aggregate_records": seen.aggregate_records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end_latency")
    parser.add_argument("--rate", type=float, default=10_000.0, help="events/s sent")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out")
    parser.add_argument("--engines", default="faust,aiokafka")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--linger-ms", type=float, default=DEFAULT_LINGER_S * 1000, help="the SDK's linger"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    results = [run_engine(engine, args, console) for engine in args.engines.split(",")]
    print(
        f"rate {args.rate:,.0f} events/s for {args.seconds:g} s, SDK linger "
        f"{args.linger_ms:g} ms; load {os.getloadavg()[0]:.2f}"
    )
    for result in results:
        stream, bare = result["stream"], result["bare"]
        assert isinstance(stream, dict) and isinstance(bare, dict)
        print(
            f"\n{result['engine']}: {result['events']:,} events in {result['messages']:,} "
            "messages "
            f"({result['progress_records']:,} progress marks, "
            f"{result['aggregate_records']:,} aggregate records)"
        )
        print(f"  {'seconds':<38}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
        for name, figures in (
            ("event -> aggregates published", stream),
            ("baseline: event -> bare consumer", bare),
        ):
            cells = "".join(f"{figures[q]:>8.3f}" for q in ("p50", "p95", "p99", "max"))
            print(f"  {name:<38}{cells}")
        gaps = result["gaps"]
        assert isinstance(gaps, dict)
        print(
            f"  {result['publications']} publications, time between them: "
            f"p50 {gaps['p50']:.3f} s, p99 {gaps['p99']:.3f} s, max {gaps['max']:.3f} s"
        )
        print(f"  max latency including the warm-up      {result['max_all']:>8.3f}")
        print(f"  SDK flush returned after last send     {result['flushed']:>8.3f}")
        print(f"  caught up after the last send          {result['caught_up']:>8.3f}")


if __name__ == "__main__":
    main()
