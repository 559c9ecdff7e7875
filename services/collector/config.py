"""The collector's limits and quotas, read from ``LIFTSTREAM_COLLECTOR_*`` variables.

- ``LIFTSTREAM_COLLECTOR_MAX_BODY_BYTES``: largest request body (5 MiB); larger is 413.
- ``LIFTSTREAM_COLLECTOR_MAX_EVENTS``: most events in one batch (1000); more is 413.
- ``LIFTSTREAM_COLLECTOR_MAX_EVENT_BYTES``: largest single event as JSON (64 KiB).
- ``LIFTSTREAM_COLLECTOR_MAX_FUTURE_S``: how far an event's timestamp may lie ahead of
  the collector's clock (300 s).
- ``LIFTSTREAM_COLLECTOR_MAX_PAST_S``: how old an event's timestamp may be (30 days).
- ``LIFTSTREAM_COLLECTOR_RATE``: a tenant's sustained quota, events per second (5000).
- ``LIFTSTREAM_COLLECTOR_BURST``: a tenant's bucket size, events (10000).
- ``LIFTSTREAM_COLLECTOR_TENANT_QUOTAS``: per-tenant overrides,
  ``tenant=rate:burst,other=rate:burst``.
- ``LIFTSTREAM_COLLECTOR_PRODUCE_TIMEOUT_S``: how long a request waits for the broker's
  acknowledgement before answering 503 (10 s).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.quotas import Quota

_PREFIX = "LIFTSTREAM_COLLECTOR_"


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


def parse_tenant_quotas(text: str) -> dict[str, Quota]:
    """``a=100:200,b=5:10`` -> per-tenant quotas; ValueError naming the bad part."""
    quotas: dict[str, Quota] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        tenant, _, numbers = part.partition("=")
        rate, _, burst = numbers.partition(":")
        try:
            quota = Quota(float(rate), float(burst or rate))
        except ValueError:
            raise ValueError(f"{_PREFIX}TENANT_QUOTAS: '{part}' is not tenant=rate:burst") from None
        if not tenant or quota.rate_per_s <= 0 or quota.burst < 1:
            raise ValueError(f"{_PREFIX}TENANT_QUOTAS: '{part}' needs rate > 0 and burst >= 1")
        quotas[tenant.strip()] = quota
    return quotas


def load_config(environ: Mapping[str, str] | None = None) -> CollectorConfig:
    """The configuration from ``environ`` (default ``os.environ``); ValueError if malformed."""
    env = os.environ if environ is None else environ
    defaults = CollectorConfig()

    def number(name: str, default: float) -> float:
        raw = env.get(_PREFIX + name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{_PREFIX}{name}={raw!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"{_PREFIX}{name}={raw!r} must be positive")
        return value

    return CollectorConfig(
        max_body_bytes=int(number("MAX_BODY_BYTES", defaults.max_body_bytes)),
        max_events=int(number("MAX_EVENTS", defaults.max_events)),
        max_event_bytes=int(number("MAX_EVENT_BYTES", defaults.max_event_bytes)),
        max_future_s=number("MAX_FUTURE_S", defaults.max_future_s),
        max_past_s=number("MAX_PAST_S", defaults.max_past_s),
        default_quota=Quota(
            number("RATE", defaults.default_quota.rate_per_s),
            number("BURST", defaults.default_quota.burst),
        ),
        tenant_quotas=parse_tenant_quotas(env.get(_PREFIX + "TENANT_QUOTAS", "")),
        produce_timeout_s=number("PRODUCE_TIMEOUT_S", defaults.produce_timeout_s),
    )
