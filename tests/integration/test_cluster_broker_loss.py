"""``liftstream up --brokers 3 --workers 2``: a three-broker cluster with replicated topics
and two stream workers; a broker SIGKILLed while the SDK and the collector send, then
started again, loses nothing acknowledged, counts nothing twice, and the aggregates equal
the ground truth; the time to recover is printed.

The platform is the real ``liftstream up`` (its own cluster of three KRaft nodes from the
Maven Central jars, in the test's home: ``LIFTSTREAM_BOOTSTRAP`` is unset for it). One
tenant's events go through the SDK (``LiftstreamClient``, Kafka delivery, acks=all),
the ``demo`` tenant's through the HTTP collector; each sender re-sends a round that was
not acknowledged with the same event ids, as a careful application does. The broker
killed leads the aggregates partition (the stream's output) and a share of the event
partitions; ``liftstream hold`` keeps it down for ``DOWN_S``, then the supervisor starts
it again once released.

Recovery is reported three ways: the longest any acknowledgement waited across the kill
(producers stall until the dead leader's partitions get a new leader), the time from the
restart until every partition has its three replicas in sync again, and the time from the
kill until the stream's aggregates covered everything sent.

``LIFTSTREAM_CLUSTER_UNITS`` (units per tenant) sizes the run; without it the suite runs
the reduced form (300 units per tenant, about 3,000 events in 12 rounds per sender; the
broker down 5 s). The
acceptance run, whose figures are in docs/benchmarks.md:

    LIFTSTREAM_CLUSTER_UNITS=3000 .venv/bin/pytest -m slow -s \\
        tests/integration/test_cluster_broker_loss.py
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from liftstream.settings import Settings
from liftstream_cli.platform_state import hold_part, release_part
from schemas.events import parse_event_message
from tests.integration.helpers_cli import LiftstreamProcess, wait_until_gone
from tests.integration.helpers_cluster import (
    CollectorSender,
    SdkSender,
    describe_replicas,
    leader_of,
    rounds,
    shifted_to_now,
    wait_until_fully_replicated,
)
from tests.integration.helpers_faults import wait_for_group_members
from tests.integration.helpers_platform import READY_TEXT, platform_state, wait_while_up
from tests.integration.helpers_stream import (
    AggregatesReader,
    assert_matches_truth,
    read_topic,
    synthetic_events,
)

UNITS_VAR = "LIFTSTREAM_CLUSTER_UNITS"
REDUCED = not os.environ.get(UNITS_VAR)
UNITS = int(os.environ.get(UNITS_VAR) or 300)
#: How long the killed broker stays down; rounds each sender sends, the pause between.
DOWN_S = 5.0 if REDUCED else 20.0
ROUNDS = 12 if REDUCED else 60
PAUSE_S = 0.5 if REDUCED else 1.0
WAIT = 180.0 + UNITS / 50

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600 + 4 * WAIT)]


@dataclass
class ClusterPlatform:
    up: LiftstreamProcess
    settings: Settings
    state: dict[str, Any]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterPlatform]:
    home = tmp_path_factory.mktemp("cluster-platform")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    saved = {name: os.environ.get(name) for name in ("LIFTSTREAM_BOOTSTRAP", "LIFTSTREAM_HOME")}
    os.environ.pop("LIFTSTREAM_BOOTSTRAP", None)  # up starts its own cluster
    os.environ["LIFTSTREAM_HOME"] = str(home)
    environment = {"LIFTSTREAM_NAMESPACE": namespace}
    up = LiftstreamProcess(["up", "--brokers", "3", "--workers", "2"], home / "up", environment)
    try:
        up.wait_for_output(READY_TEXT, timeout=420)
        settings = Settings(
            bootstrap="", namespace=namespace, partitions=12, home=home, results_url=""
        )
        state = platform_state(settings)
        settings = Settings(
            bootstrap=state["bootstrap"],
            namespace=namespace,
            partitions=12,
            home=home,
            results_url=state["results_url"],
            replication_factor=3,
        )
        yield ClusterPlatform(up, settings, state)
    finally:
        if up.process.poll() is None:
            os.kill(up.process.pid, signal.SIGTERM)
        try:
            code = up.wait(timeout=180)
        finally:
            up.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        assert code == 0, up.stderr
        assert wait_until_gone(namespace) == []


def test_up_runs_three_brokers_replicated_topics_and_two_workers(
    platform: ClusterPlatform,
) -> None:
    state, settings = platform.state, platform.settings
    assert len(state["bootstrap"].split(",")) == 3
    assert {"broker-1", "broker-2", "broker-3", "stream-1", "stream-2"} <= set(state["pids"])
    assert (state["brokers"], state["workers"], state["partitions"]) == (3, 2, 12)
    topics = [spec.name for spec in settings.topics.specs()]
    replicas = describe_replicas(settings.bootstrap, topics)
    assert all(assigned == [1, 2, 3] for _, assigned, _ in replicas.values())
    assert sum(1 for topic, _ in replicas if topic == settings.topics.exposures) == 12
    # Leadership is spread over the brokers, so losing one stalls only its share.
    assert set(Counter(leader for leader, _, _ in replicas.values())) == {1, 2, 3}
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        for topic in topics:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            config = admin.describe_configs([resource])["topic"][topic]
            assert config["min.insync.replicas"]["value"] == "2", topic
    finally:
        admin.close()
    # Both workers are members of the one group, each owning a share of the partitions.
    wait_for_group_members(settings, f"{settings.namespace}-stream", 2)


def test_a_broker_killed_while_sdk_and_collector_send_loses_and_doubles_nothing(
    platform: ClusterPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    up, settings, state = platform.up, platform.settings, platform.state
    monkeypatch.setenv("LIFTSTREAM_BOOTSTRAP", settings.bootstrap)
    monkeypatch.setenv("LIFTSTREAM_NAMESPACE", settings.namespace)
    events = shifted_to_now(synthetic_events(seed=1601, units_per_tenant=UNITS))
    # The collector's events are the demo tenant's (its key's); the SDK sends globex's.
    events = [e.model_copy(update={"tenant_id": "demo"}) if e.tenant_id == "acme" else e
              for e in events]  # fmt: skip
    round_count, pause = ROUNDS, PAUSE_S
    senders = [
        CollectorSender(
            "collector", rounds([e for e in events if e.tenant_id == "demo"], round_count),
            pause, url=state["collector_url"], key=state["api_key"],
        ),
        SdkSender(
            "sdk", rounds([e for e in events if e.tenant_id == "globex"], round_count), pause,
            tenant="globex",
        ),
    ]  # fmt: skip
    reader = AggregatesReader(settings)
    victim = ""
    try:
        for sender in senders:
            sender.start()
        # The kill comes once 30% of the rounds are acknowledged.
        while sum(len(sender.rounds) for sender in senders) < 0.3 * 2 * ROUNDS:
            for sender in senders:
                assert sender.error is None, f"{sender.name} failed: {sender.error!r}"
            time.sleep(0.1)

        victim = f"broker-{leader_of(settings.bootstrap, settings.topics.aggregates, 0)}"
        old_pid = platform_state(settings)["pids"][victim]
        hold_part(settings.home, victim)
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sent_at_kill = sum(len(s.acknowledged) for s in senders)
        time.sleep(DOWN_S)
        release_part(settings.home, victim)
        released_at = time.monotonic()

        def restarted() -> bool:
            now = platform_state(settings)
            return bool(now["pids"][victim] != old_pid and now["restarts"].get(victim, 0) >= 1)

        wait_while_up(restarted, WAIT, f"{victim} did not come back", up)
        serving_s = time.monotonic() - released_at
        replicated_s = wait_until_fully_replicated(
            settings.bootstrap, [spec.name for spec in settings.topics.specs()], timeout=WAIT
        )
        for sender in senders:
            sender.join(WAIT)
        sending_ended_s = time.monotonic() - killed_at
        view = reader.wait_until_caught_up(timeout=WAIT)
        caught_up_s = time.monotonic() - killed_at
    finally:
        reader.close()
        if victim:
            release_part(settings.home, victim)
        released_at = time.monotonic()

    restarts = platform_state(settings)["restarts"]
    assert {part: count for part, count in restarts.items() if count} == {victim: 1}, (
        "only the killed broker was restarted: no worker or service died of the loss"
    )
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
    # A re-sent round may store an event twice in the log; the aggregates count it once.
    assert_matches_truth(view, acknowledged)

    stall_s = max(sender.longest_round_s(killed_at) for sender in senders)
    resent = sum(r.attempts - 1 for sender in senders for r in sender.rounds)
    print(
        f"\n{victim} of 3 SIGKILLed with {sent_at_kill:,} of {len(events):,} events "
        f"acknowledged, held down {DOWN_S:.0f}s; longest acknowledgement across the kill "
        f"{stall_s:.1f}s; release to the broker serving again {serving_s:.1f}s, then to all "
        f"replicas in sync {replicated_s:.1f}s; kill to "
        f"aggregates caught up {caught_up_s:.1f}s (sending ended {sending_ended_s:.1f}s "
        f"after the kill); rounds re-sent {resent}; events stored twice in the log "
        f"{sum(1 for count in stored.values() if count > 1)}; acknowledged and lost 0; "
        f"aggregates == truth"
    )
