"""The collector's limits and quotas: ``CollectorConfig``, what its request path reads.

``load_config`` builds it from the ``LIFTSTREAM_COLLECTOR_*`` variables
(``services.settings.CollectorSettings`` lists them with their defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.quotas import Quota
from services.settings import CollectorSettings, load


@dataclass(frozen=True)
class CollectorConfig:
    max_body_bytes: int = 5 * 1024 * 1024
    max_events: int = 1000
    max_event_bytes: int = 64 * 1024
    max_future_s: float = 300.0
    max_past_s: float = 30 * 24 * 3600.0
    default_quota: Quota = Quota(rate_per_s=5000.0, burst=10000.0)
    tenant_quotas: Mapping[str, Quota] = field(default_factory=dict)
    produce_timeout_s: float = 10.0

    def quota_of(self, tenant_id: str) -> Quota:
        return self.tenant_quotas.get(tenant_id, self.default_quota)


def load_config(environ: Mapping[str, str] | None = None) -> CollectorConfig:
    """The configuration from ``environ`` (default ``os.environ``); ValueError if malformed."""
    return config_of(load(CollectorSettings, environ))


def config_of(settings: CollectorSettings) -> CollectorConfig:
    return CollectorConfig(
        max_body_bytes=settings.max_body_bytes,
        max_events=settings.max_events,
        max_event_bytes=settings.max_event_bytes,
        max_future_s=settings.max_future_s,
        max_past_s=settings.max_past_s,
        default_quota=Quota(settings.rate, settings.burst),
        tenant_quotas=settings.tenant_quotas,
        produce_timeout_s=settings.produce_timeout_s,
    )
