"""A broker of a three-broker cluster is SIGKILLed while the SDK and the collector send,
then started again: nothing acknowledged is lost, nothing is counted twice, the
aggregates equal the ground truth, and the time to recover is printed.

The cluster is ``services.broker.cluster`` (three KRaft nodes from the Maven Central
jars), with every topic on three replicas and ``min.insync.replicas`` 2; producers use
acks=all. One tenant's events go through the SDK (``LiftstreamClient``, Kafka delivery),
another's through the HTTP collector; each sender re-sends a round that was not
acknowledged with the same event ids, as a careful application does. Two stream workers
share the 12 partitions. The broker killed leads the aggregates partition (the stream's
output) and a share of the event partitions.

Recovery is reported three ways: the longest any acknowledgement waited across the kill
(producers stall until the dead leader's partitions get a new leader), the time from the
restart until every partition has its three replicas in sync again, and the time from the
kill until the stream's aggregates covered everything sent.

``LIFTSTREAM_CLUSTER_UNITS`` (units per tenant) sizes the run; without it the suite runs
the reduced form (300 units per tenant, about 3,000 events; the broker down 5 s). The
acceptance run, whose figures are in docs/benchmarks.md:

    LIFTSTREAM_CLUSTER_UNITS=10000 .venv/bin/pytest -m slow -s \\
        tests/integration/test_cluster_broker_loss.py
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from schemas.events import parse_event_message
from services.broker.cluster import LocalKafkaCluster
from tests.integration.helpers_cluster import (
    CollectorSender,
    SdkSender,
    cluster_settings_for,
    describe_replicas,
    leader_of,
    rounds,
    shifted_to_now,
    split_by_tenant,
    wait_until_fully_replicated,
)
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_stream import (
    AggregatesReader,
    StreamWorker,
    assert_matches_truth,
    read_topic,
    synthetic_events,
)
from tests.integration.test_collector_service import CollectorProcess

UNITS_VAR = "LIFTSTREAM_CLUSTER_UNITS"
REDUCED = not os.environ.get(UNITS_VAR)
UNITS = int(os.environ.get(UNITS_VAR) or 300)
#: How long the killed broker stays down, and how long the sending lasts.
DOWN_S = 5.0 if REDUCED else 20.0
SEND_S = 20.0 if REDUCED else 90.0
WAIT = 120.0 + UNITS / 50

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300 + 4 * WAIT)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    with LocalKafkaCluster(tmp_path_factory.mktemp("cluster"), brokers=3) as cluster:
        yield cluster


def test_topics_are_replicated_three_times_with_two_in_sync_required(
    cluster: LocalKafkaCluster, tmp_path: Path
) -> None:
    settings = cluster_settings_for(cluster.bootstrap, tmp_path / "home")
    topics = [spec.name for spec in settings.topics.specs()]
    replicas = describe_replicas(cluster.bootstrap, topics)
    assert all(assigned == [1, 2, 3] for _, assigned, _ in replicas.values())
    # Leadership is spread over the brokers, so losing one stalls only its share.
    leaders = Counter(leader for leader, _, _ in replicas.values())
    assert set(leaders) == {1, 2, 3}
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        for topic in topics:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            config = admin.describe_configs([resource])["topic"][topic]
            assert config["min.insync.replicas"]["value"] == "2", topic
    finally:
        admin.close()


def test_a_broker_killed_while_sdk_and_collector_send_loses_and_doubles_nothing(
    cluster: LocalKafkaCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = cluster_settings_for(cluster.bootstrap, tmp_path / "home")
    environment = {
        "LIFTSTREAM_BOOTSTRAP": cluster.bootstrap,
        "LIFTSTREAM_NAMESPACE": settings.namespace,
        "LIFTSTREAM_PARTITIONS": str(settings.partitions),
        "LIFTSTREAM_REPLICATION_FACTOR": "3",
        "LIFTSTREAM_HOME": str(settings.home),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    events = shifted_to_now(synthetic_events(seed=1601, units_per_tenant=UNITS))
    by_tenant = split_by_tenant(events)
    keys = create_tenant(cluster.bootstrap, settings.topics.control, "acme")
    round_count = max(20, len(events) // 150)
    pause = SEND_S / round_count

    reader = AggregatesReader(settings)
    workers = [StreamWorker(tmp_path / f"stream-{n}.log") for n in range(2)]
    collector = CollectorProcess(tmp_path / "collector.log", environment)
    victim = None
    try:
        collector.start()
        collector.wait_until_key_known(keys["ingest"])
        senders = [
            CollectorSender(
                "collector", rounds(by_tenant["acme"], round_count), pause,
                url=collector.url, key=keys["ingest"],
            ),
            SdkSender("sdk", rounds(by_tenant["globex"], round_count), pause, tenant="globex"),
        ]  # fmt: skip
        for sender in senders:
            sender.start()
        time.sleep(SEND_S * 0.3)

        victim_id = leader_of(cluster.bootstrap, settings.topics.aggregates, 0)
        victim = cluster.nodes[victim_id - 1]
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        killed_at = time.monotonic()
        sent_at_kill = sum(len(s.acknowledged) for s in senders)
        time.sleep(DOWN_S)
        victim.start()
        replicated_s = wait_until_fully_replicated(
            cluster.bootstrap, [spec.name for spec in settings.topics.specs()], timeout=WAIT
        )

        for sender in senders:
            sender.join(WAIT)
        ends_at = time.monotonic()
        view = reader.wait_until_caught_up(timeout=WAIT)
        caught_up_s = time.monotonic() - killed_at
        for worker in workers:
            assert worker.alive(), f"a stream worker died:\n{worker.log_tail()}"
    finally:
        reader.close()
        for worker in workers:
            worker.stop()
        collector.stop()
        if victim is not None and (victim.process is None or victim.process.poll() is not None):
            victim.start()

    acknowledged = [event for sender in senders for event in sender.acknowledged]
    assert len(acknowledged) == len(events), "every event was acknowledged in the end"
    stored = Counter(
        str(event.event_id)
        for topic in (settings.topics.exposures, settings.topics.outcomes)
        for _, value in read_topic(settings, topic)
        for event in parse_event_message(value)
    )
    lost = [event.event_id for event in acknowledged if stored[str(event.event_id)] == 0]
    assert lost == [], f"{len(lost)} acknowledged events are not in Kafka"
    # Re-sent rounds may store an event twice in the log; the aggregates count it once.
    assert_matches_truth(view, acknowledged)

    stall_s = max(sender.longest_round_s(killed_at) for sender in senders)
    resent = sum(r.attempts - 1 for sender in senders for r in sender.rounds)
    print(
        f"\nbroker {victim_id} of 3 SIGKILLed with {sent_at_kill:,} of {len(events):,} events "
        f"acknowledged, down {DOWN_S:.0f}s; "
        f"longest acknowledgement across the kill {stall_s:.1f}s; "
        f"restart to all replicas in sync {replicated_s:.1f}s; "
        f"kill to aggregates caught up {caught_up_s:.1f}s "
        f"(sending ended {ends_at - killed_at:.1f}s after the kill); "
        f"rounds re-sent {resent}; events stored twice in the log "
        f"{sum(1 for count in stored.values() if count > 1)}; lost 0; aggregates == truth"
    )
