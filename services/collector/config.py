"""The collector's limits and quotas: ``CollectorConfig``, what its request path reads.

``load_config`` builds it from the ``LIFTSTREAM_COLLECTOR_*`` variables
(``services.settings.CollectorSettings`` lists them with their defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.quotas import Quota
from services.settings import CollectorSettings, load

#: The settings' defaults, read without the environment: the one place they are written.
_DEFAULTS = CollectorSettings.model_construct()


@dataclass(frozen=True)
class CollectorConfig:
    max_body_bytes: int = _DEFAULTS.max_body_bytes
    max_events: int = _DEFAULTS.max_events
    max_event_bytes: int = _DEFAULTS.max_event_bytes
    max_future_s: float = _DEFAULTS.max_future_s
    max_past_s: float = _DEFAULTS.max_past_s
    default_quota: Quota = Quota(rate_per_s=_DEFAULTS.rate, burst=_DEFAULTS.burst)
    tenant_quotas: Mapping[str, Quota] = field(default_factory=dict)
    produce_timeout_s: float = _DEFAULTS.produce_timeout_s

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
