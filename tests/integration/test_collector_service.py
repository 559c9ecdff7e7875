"""The collector as a process against the real broker: partial batches, keys, quotas, 503.

``CollectorProcess`` (``helpers_collector.py``) runs ``python -m services.collector
--port 0`` with the test's environment and waits for ``collector ready at URL``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from liftstream.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.partitioning import partition_for
from services.collector.sink import KafkaSink, SinkUnavailable
from tests.integration.helpers_collector import (
    CollectorProcess,
    exposure,
    outcome,
    read_events,
    read_topic,
)
from tests.integration.helpers_control import create_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def acme_keys(platform_settings: Settings) -> dict[str, str]:
    return create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")


def test_a_partial_batch_lands_good_events_once_and_bad_ones_on_the_dead_letter_topic(
    platform_settings: Settings, acme_keys: dict[str, str], tmp_path: Path
) -> None:
    topics = platform_settings.topics
    good = [exposure("u1"), outcome("u1"), outcome("u2", tenant_id="acme")]
    oversized = "z" * 2_000_000  # more than Kafka takes in one message: cut in its dead letter
    bad = [outcome("u3", value="NaN-ish"), outcome("u4", tenant_id="globex"), 42, oversized]
    batch = [good[0], bad[0], good[1], bad[1], good[2], bad[2], bad[3]]
    with CollectorProcess(tmp_path / "collector.log") as collector:
        collector.wait_until_key_known(acme_keys["ingest"])
        answer = collector.post({"events": batch}, acme_keys["ingest"])
        assert answer.status_code == 207, answer.text
        body = answer.json()
        assert (body["accepted"], body["rejected"]) == (3, 4)
        assert {e["index"] for e in body["errors"]} == {1, 3, 5, 6}
        fields = {e["index"]: e["field"] for e in body["errors"]}
        assert fields[1].endswith("value") and fields[3] == "tenant_id"

    stored = [
        (partition, event)
        for topic in (topics.exposures, topics.outcomes)
        for partition, event in read_events(platform_settings.bootstrap, topic)
    ]
    counts = Counter(str(event.event_id) for _, event in stored)
    assert counts == Counter(item["event_id"] for item in good)  # each exactly once
    for partition, event in stored:
        assert event.tenant_id == "acme"
        # In batch messages, on the partition Kafka's default partitioner gives tenant:unit.
        key = f"acme:{event.unit_id}".encode()
        assert partition == partition_for(key, platform_settings.partitions)
        assert event.received_at is not None

    letters = [
        DeadLetter.model_validate_json(value)
        for _, value in read_topic(platform_settings.bootstrap, topics.deadletter)
    ]
    assert len(letters) == 4
    assert {letter.stage for letter in letters} == {"collector"}
    assert all(letter.reason and letter.errors for letter in letters)
    assert any(e.field == "tenant_id" for letter in letters for e in letter.errors)
    assert any('"u3"' in letter.payload for letter in letters)
    assert any("truncated" in letter.payload for letter in letters)


def test_keys_are_checked_and_a_bursty_tenant_is_throttled_alone(
    platform_settings: Settings, acme_keys: dict[str, str], tmp_path: Path
) -> None:
    bursty = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "bursty")
    # A slow refill (one event per 10 s) keeps the test independent of the machine's speed.
    env = {
        "LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": "bursty=0.1:40",
        "LIFTSTREAM_METRICS_TOKEN": "operator-secret",
    }
    with CollectorProcess(tmp_path / "collector.log", env) as collector:
        collector.wait_until_key_known(acme_keys["ingest"])
        collector.wait_until_key_known(bursty["ingest"])
        assert collector.post([outcome("u1")], None).status_code == 401
        assert collector.post([outcome("u1")], "lsk_nope_nope").status_code == 401
        assert collector.post([outcome("u1")], acme_keys["read"]).status_code == 403
        assert collector.post([outcome("u1")], acme_keys["admin"]).status_code == 202

        bursty_statuses = []
        acme_statuses = []
        for round_ in range(10):
            batch = [outcome(f"b{round_}-{i}") for i in range(10)]
            answer = collector.post(batch, bursty["ingest"])
            bursty_statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
                assert "quota" in answer.json()["detail"]
            acme_statuses.append(collector.post([outcome(f"a{round_}")], acme_keys["ingest"]))
        assert bursty_statuses == [202] * 4 + [429] * 6  # the burst of 40 events, then no more
        assert [answer.status_code for answer in acme_statuses] == [202] * 10

        assert httpx.get(f"{collector.url}/readyz").status_code == 200
        metrics = httpx.get(
            f"{collector.url}/metrics", headers={"Authorization": "Bearer operator-secret"}
        ).text
        throttled = bursty_statuses.count(429)
        # Platform totals: by default /metrics names no tenant (11 of acme's, 40 of bursty's).
        assert f"liftstream_collector_requests_throttled_total {throttled}.0" in metrics
        assert "liftstream_collector_events_accepted_total 51.0" in metrics
        assert "acme" not in metrics and "bursty" not in metrics
        for key in (None, acme_keys["admin"]):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            assert httpx.get(f"{collector.url}/metrics", headers=headers).status_code == 401


def test_without_a_broker_sending_fails_in_bounded_time_and_readiness_says_so() -> None:
    from services.broker.local import free_port

    async def scenario() -> tuple[str | None, float]:
        sink = KafkaSink(f"127.0.0.1:{free_port()}")
        await sink.start()
        started = time.monotonic()
        with pytest.raises(SinkUnavailable):
            await sink.send_all([("topic", b"k", b"v")], timeout_s=2.0)
        elapsed = time.monotonic() - started
        problem = await sink.ready(1.0)
        await sink.stop()
        return problem, elapsed

    problem, elapsed = asyncio.run(scenario())
    assert problem is not None and "127.0.0.1" not in problem
    assert elapsed < 20
