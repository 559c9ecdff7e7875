"""The local Apache Kafka broker (KRaft, from Maven Central jars) and topic creation."""

from services.broker.local import LocalKafka, ensure_broker_jars
from services.broker.topics import ensure_topics, wait_for_broker

__all__ = ["LocalKafka", "ensure_broker_jars", "ensure_topics", "wait_for_broker"]
