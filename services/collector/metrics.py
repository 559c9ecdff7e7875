"""The collector's Prometheus metrics, in a registry of their own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "liftstream_collector_events_accepted",
            "Events the broker acknowledged, by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "liftstream_collector_events_rejected",
            "Events or requests refused, by reason (per event, or per request for whole-body "
            "refusals).",
            ["reason"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "liftstream_collector_requests_throttled",
            "Requests answered 429 because the tenant was over its quota, by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "liftstream_collector_produce_seconds",
            "Time from handing a batch to the producer until the broker acknowledged all of it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.unavailable = Counter(
            "liftstream_collector_broker_unavailable",
            "Requests answered 503 because of a broker outage.",
            registry=self.registry,
        )
        self.producers_replaced = Counter(
            "liftstream_collector_producers_replaced",
            "Producers closed and replaced after a failed delivery, by Kafka error.",
            ["error"],
            registry=self.registry,
        )

    def producer_replaced(self, error: str) -> None:
        self.producers_replaced.labels(error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
