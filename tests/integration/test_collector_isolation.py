"""Tenant isolation in the collector process: a flooding tenant is throttled, the others are not.

Timing is measured by ``bench/collector_isolation.py``; these tests assert what a user
sees: the flood gets 429s with ``Retry-After`` and its quota's worth accepted, while a
calm tenant's requests all succeed during the flood; and a unit's exposures and outcomes
land on the same partition whichever of the sink's producers sends them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from liftstream.settings import Settings
from services.collector.sink import KafkaSink
from tests.integration.helpers_collector import CollectorProcess, outcome
from tests.integration.helpers_control import create_tenant

pytestmark = pytest.mark.integration

FLOOD_CLIENTS = 4
BATCH = 10


def test_a_flooding_tenant_gets_429s_while_a_calm_tenants_requests_all_succeed(
    platform_settings: Settings, tmp_path: Path
) -> None:
    bootstrap, control = platform_settings.bootstrap, platform_settings.topics.control
    calm = create_tenant(bootstrap, control, "calm")
    flood = create_tenant(bootstrap, control, "flood")
    # A burst of 4 batches and a refill of one event per 10 s: the flood's accepted share
    # does not depend on how fast this machine is.
    env = {
        "LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": f"flood=0.1:{4 * BATCH}",
        "LIFTSTREAM_METRICS_TOKEN": "operator-secret",
        "LIFTSTREAM_METRICS_TENANT_LABELS": "1",
    }
    with CollectorProcess(tmp_path / "collector.log", env) as collector:
        collector.wait_until_key_known(calm["ingest"])
        collector.wait_until_key_known(flood["ingest"])
        calm_done = threading.Event()

        def flood_client(client: int) -> list[httpx.Response]:
            answers: list[httpx.Response] = []
            with httpx.Client(
                base_url=collector.url,
                headers={"Authorization": f"Bearer {flood['ingest']}"},
                timeout=30,
            ) as http:
                while not calm_done.is_set() or len(answers) < 5:
                    batch = [outcome(f"f{client}-{len(answers)}-{i}") for i in range(BATCH)]
                    answers.append(http.post("/v1/events", json=batch))
            return answers

        with ThreadPoolExecutor(FLOOD_CLIENTS) as pool:
            floods = [pool.submit(flood_client, client) for client in range(FLOOD_CLIENTS)]
            with httpx.Client(
                base_url=collector.url,
                headers={"Authorization": f"Bearer {calm['ingest']}"},
                timeout=30,
            ) as http:
                calm_statuses = [
                    http.post(
                        "/v1/events", json=[outcome(f"c{n}-{i}") for i in range(BATCH)]
                    ).status_code
                    for n in range(30)
                ]
            calm_done.set()
            flood_answers = [answer for future in floods for answer in future.result()]

        assert calm_statuses == [202] * 30
        statuses = [answer.status_code for answer in flood_answers]
        assert statuses.count(202) == 4, statuses  # its burst, and nothing more
        assert set(statuses) == {202, 429}
        for answer in flood_answers:
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
                assert "flood" in answer.json()["detail"]
        metrics = httpx.get(
            f"{collector.url}/metrics", headers={"Authorization": "Bearer operator-secret"}
        ).text
        assert f'liftstream_collector_events_accepted_total{{tenant="calm"}} {30 * BATCH}.0' in (
            metrics
        )
        assert f'liftstream_collector_events_accepted_total{{tenant="flood"}} {4 * BATCH}.0' in (
            metrics
        )


def test_a_units_events_share_a_partition_whichever_producer_sends_them(
    platform_settings: Settings,
) -> None:
    topics = platform_settings.topics
    units = [f"acme:user-{n}".encode() for n in range(40)]

    async def send_concurrently() -> None:
        sink = KafkaSink(platform_settings.bootstrap)
        await sink.start()
        try:
            # Concurrent requests spread over the producers.
            await asyncio.gather(
                *(
                    sink.send_all(
                        [(topics.exposures, unit, b"{}"), (topics.outcomes, unit, b"{}")], 10
                    )
                    for unit in units
                )
            )
        finally:
            await sink.stop()

    asyncio.run(send_concurrently())
    partition_of: dict[str, dict[bytes, int]] = {}
    consumer = KafkaConsumer(bootstrap_servers=platform_settings.bootstrap, group_id=None)
    try:
        for topic in (topics.exposures, topics.outcomes):
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            found: dict[bytes, int] = {}
            deadline = time.monotonic() + 30
            while len(found) < len(units):
                assert time.monotonic() < deadline, f"only {len(found)} units on {topic}"
                for tp, records in consumer.poll(timeout_ms=1000).items():
                    found.update({record.key: tp.partition for record in records})
            partition_of[topic] = found
    finally:
        consumer.close()
    # The Java client's (and kafka-python's) default partitioner.
    java_like = {
        unit: (murmur2(unit) & 0x7FFFFFFF) % platform_settings.partitions for unit in units
    }
    assert partition_of[topics.exposures] == java_like
    assert partition_of[topics.outcomes] == java_like
