"""The collector's Prometheus metrics, in a registry of their own (one per app).

Per-tenant counts (accepted events, throttled requests) carry a ``tenant`` label only when
the operator opts in (``LIFTSTREAM_METRICS_TENANT_LABELS``, ``services.operator_metrics``);
by default they are platform totals, so ``/metrics`` names no tenant.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from services.operator_metrics import tenant_labels_enabled

CONTENT_TYPE = CONTENT_TYPE_LATEST


class PerTenant:
    """A counter counted by tenant when labels are on, else in one platform total.

    ``labels(tenant)`` gives what to ``inc``, either way.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry, by_tenant: bool):
        self._by_tenant = by_tenant
        self._counter = Counter(
            name,
            documentation + (", by tenant." if by_tenant else " (all tenants)."),
            ["tenant"] if by_tenant else [],
            registry=registry,
        )

    def labels(self, tenant_id: str) -> Counter:
        return self._counter.labels(tenant_id) if self._by_tenant else self._counter


class CollectorMetrics:
    def __init__(self, tenant_labels: bool | None = None) -> None:
        by_tenant = tenant_labels_enabled() if tenant_labels is None else tenant_labels
        self.registry = CollectorRegistry()
        self.accepted = PerTenant(
            "liftstream_collector_events_accepted",
            "Events the broker acknowledged",
            self.registry,
            by_tenant,
        )
        self.rejected = Counter(
            "liftstream_collector_events_rejected",
            "Events or requests refused, by reason (per event, or per request for whole-body "
            "refusals).",
            ["reason"],
            registry=self.registry,
        )
        self.throttled = PerTenant(
            "liftstream_collector_requests_throttled",
            "Requests answered 429 because the tenant was over its quota",
            self.registry,
            by_tenant,
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
