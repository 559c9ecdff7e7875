"""End-to-end throughput: SDK -> Kafka -> stream worker -> results service (DuckDB).

``python -m bench.end_to_end [--events 200000]`` starts a platform in a fresh namespace
and data home (the broker from ``LIFTSTREAM_BOOTSTRAP``, else a local one), defines an
experiment, sends the events through the SDK, and times until the stream has aggregated
them and the results service has loaded them into DuckDB, and how long after the last
send the stream and DuckDB caught up. Printed beside it, from the same run: a bare
aiokafka consumer reading the same topics (messages/s: the SDK sends batch messages,
so its events/s is that times the events per message).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from bench.kafka_baseline import raw_consume_rate
from liftstream.client import LiftstreamClient
from liftstream.settings import load_settings
from liftstream_cli.control import apply_experiment, load_experiment_file
from liftstream_cli.demo import DEMO_EXPERIMENT_FILE, behind, catch_up_target
from liftstream_cli.platform import PlatformSupervisor
from liftstream_cli.results_api import ResultsApi
from services.broker.topics import namespace_deleted_afterwards

EVENTS_PER_UNIT = 4  # one exposure, two page views, one purchase or add-to-cart
EXPERIMENT = load_experiment_file(DEMO_EXPERIMENT_FILE)


def send_events(client: LiftstreamClient, events: int, seed: int = 1) -> int:
    """Send ``events`` events (``EVENTS_PER_UNIT`` per unit) through the SDK; return the count."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    sent = 0
    for index in range(events // EVENTS_PER_UNIT):
        unit = f"unit-{index}"
        at = start + timedelta(seconds=index % 3600)
        client.expose(EXPERIMENT, unit, timestamp=at)
        client.track(unit, "page_view", timestamp=at)
        client.track(unit, "page_view", timestamp=at + timedelta(seconds=5))
        if rng.random() < 0.12:
            client.track(unit, "purchase", rng.lognormvariate(3.5, 0.7), timestamp=at)
        else:
            client.track(unit, "add_to_cart", timestamp=at)
        sent += EVENTS_PER_UNIT
    client.flush()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="liftstream-bench-"))
    os.environ["LIFTSTREAM_HOME"] = str(home)
    os.environ["LIFTSTREAM_NAMESPACE"] = f"bench{uuid.uuid4().hex[:8]}"
    settings = load_settings()
    console = Console(stderr=True)
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
        started = time.perf_counter()
        with LiftstreamClient(state.tenant, bootstrap=state.bootstrap) as client:
            sent = send_events(client, args.events)
        sent_at = time.perf_counter()
        target = catch_up_target(state.bootstrap, settings.topics)
        stream_done_at = loaded_at = 0.0
        with ResultsApi(state.results_url, state.api_key) as api:
            while True:
                now = time.perf_counter()
                progress = api.progress()
                if not stream_done_at and behind(progress, replace(target, loaded={})) == 0:
                    stream_done_at = now
                if behind(progress, target) == 0:
                    loaded_at = now
                    break
                if now - started > args.timeout:
                    raise SystemExit(f"not caught up after {args.timeout:.0f}s")
                time.sleep(0.2)
        topics = {settings.topics.exposures: settings.partitions}
        topics[settings.topics.outcomes] = settings.partitions
        raw_count, raw_seconds = raw_consume_rate(state.bootstrap, topics)

    end_to_end = sent / (loaded_at - started)
    raw_rate = raw_count / raw_seconds
    per_message = sent / max(raw_count, 1)
    print(f"events                          {sent:>12,}")
    print(f"SDK send (acks=all)             {sent / (sent_at - started):>12,.0f} events/s")
    print(f"stream aggregated all after     {stream_done_at - started:>12.1f} s")
    print(f"  (caught up {stream_done_at - sent_at:.1f} s after the last send)")
    print(f"DuckDB loaded all after         {loaded_at - started:>12.1f} s")
    print(f"end to end                      {end_to_end:>12,.0f} events/s")
    print(
        f"baseline: raw aiokafka consume  {raw_rate:>12,.0f} messages/s ({raw_count:,} messages, "
        f"{per_message:,.0f} events each: {raw_rate * per_message:,.0f} events/s)"
    )


if __name__ == "__main__":
    main()
