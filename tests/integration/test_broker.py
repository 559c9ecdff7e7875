"""The platform creates its topics from the catalog on a real broker, and the local broker
keeps its log across a clean restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from liftstream.settings import Settings
from services.broker.local import LocalKafka
from services.broker.topics import delete_namespace_topics, ensure_topics

pytestmark = pytest.mark.integration


def _topic_config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {name: entry["value"] for name, entry in response["topic"][topic].items()}


def test_catalog_topics_exist_with_partitions_and_retention(platform_settings: Settings) -> None:
    catalog = platform_settings.topics
    admin = KafkaAdminClient(bootstrap_servers=platform_settings.bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([s.name for s in catalog.specs()])}
        for spec in catalog.specs():
            assert len(described[spec.name]["partitions"]) == spec.partitions, spec.name
            config = _topic_config(admin, spec.name)
            for name, value in spec.config.items():
                assert config[name] == value, (spec.name, name)
        assert len(described[catalog.exposures]["partitions"]) == len(
            described[catalog.outcomes]["partitions"]
        ), "exposures and outcomes must be co-partitioned"
    finally:
        admin.close()
    assert ensure_topics(platform_settings.bootstrap, catalog) == [], "second call creates nothing"


def test_broker_does_not_auto_create_topics(platform_settings: Settings) -> None:
    producer = KafkaProducer(bootstrap_servers=platform_settings.bootstrap, max_block_ms=3000)
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            producer.send(f"{platform_settings.namespace}.typo", b"x").get(timeout=5)
    finally:
        producer.close(timeout=2)


def test_local_broker_keeps_its_log_across_a_clean_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    catalog = Settings("", "restart", 1, tmp_path, "").topics
    with LocalKafka(data_dir) as broker:
        ensure_topics(broker.bootstrap, catalog)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        producer.send(catalog.control, b"kept", key=b"k").get(timeout=10)
        producer.close()
        first_port = broker.broker_port
    # The JVM answers SIGTERM by running Kafka's shutdown hook and exiting 143 (128 + 15);
    # a broker that had to be SIGKILLed would show -9.
    assert broker.process is not None
    assert broker.process.returncode == 143, "SIGTERM stops the broker cleanly"

    with LocalKafka(data_dir) as restarted:
        assert restarted.broker_port == first_port, "ports are kept when free"
        consumer = KafkaConsumer(bootstrap_servers=restarted.bootstrap, consumer_timeout_ms=10000)
        partition = TopicPartition(catalog.control, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values = [record.value for record in consumer]
        consumer.close()
    assert values == [b"kept"]


def test_local_broker_comes_back_on_its_ports_right_after_a_sigkill(tmp_path: Path) -> None:
    """After a crash the old connections linger in TIME-WAIT; the broker still takes its
    ports again at once, so clients and platform.json keep pointing at it."""
    data_dir = tmp_path / "kafka"
    catalog = Settings("", "crash", 1, tmp_path, "").topics
    broker = LocalKafka(data_dir).start()
    try:
        ensure_topics(broker.bootstrap, catalog)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        producer.send(catalog.control, b"acknowledged", key=b"k").get(timeout=10)
        ports = (broker.broker_port, broker.controller_port)
        assert broker.process is not None
        os.killpg(broker.process.pid, signal.SIGKILL)
        broker.process.wait()
        producer.close(timeout=1)

        broker.start()
        assert (broker.broker_port, broker.controller_port) == ports
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=10000)
        partition = TopicPartition(catalog.control, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values = [record.value for record in consumer]
        consumer.close()
        assert values == [b"acknowledged"]
    finally:
        broker.stop()


def test_topics_command_creates_the_catalog_once_with_its_replication(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``python -m services.broker topics``: what compose and the Helm chart run first."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "LIFTSTREAM_BOOTSTRAP": kafka_bootstrap,
        "LIFTSTREAM_NAMESPACE": namespace,
        "LIFTSTREAM_PARTITIONS": "6",
        "LIFTSTREAM_REPLICATION_FACTOR": "1",
        "LIFTSTREAM_HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "services.broker", "topics"]
    try:
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert f"{namespace}.exposures" in first.stdout
        catalog = Settings(kafka_bootstrap, namespace, 6, tmp_path, "").topics
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            described = {t["name"]: t for t in admin.describe_topics([catalog.exposures])}
            assert len(described[catalog.exposures]["partitions"]) == 6
            assert _topic_config(admin, catalog.exposures)["min.insync.replicas"] == "1"
        finally:
            admin.close()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "none (all existed)" in again.stdout
        # Replication the cluster cannot give is refused, naming the setting.
        env["LIFTSTREAM_REPLICATION_FACTOR"] = "zero"
        wrong = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert wrong.returncode == 2
        assert "LIFTSTREAM_REPLICATION_FACTOR" in wrong.stderr
    finally:
        delete_namespace_topics(kafka_bootstrap, namespace)
