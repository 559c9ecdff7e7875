"""Per-tenant token buckets: each tenant's quota is its own, so a burst only throttles itself.

The collector paces events with them, the control service paces writes.

A request for ``n`` events takes ``min(n, burst)`` tokens (a batch larger than the burst
passes when the bucket is full, rather than never). Refused requests take nothing and
learn how many seconds until enough tokens are back (the 429's ``Retry-After``).
``peek`` answers whether even one event would pass, without taking anything, so that a
tenant with an empty bucket is refused before its body is read and parsed. ``refund``
gives back what an admitted request took when nothing of it was acknowledged (the broker
was down: 503), so a retry is not throttled for the collector's failure.
The clock is injected so tests can drive time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Quota:
    rate_per_s: float
    burst: float


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (the header has no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class TokenBucket:
    def __init__(self, quota: Quota, clock: Clock) -> None:
        self.quota = quota
        self._clock = clock
        self._tokens = quota.burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.quota.burst, self._tokens + elapsed * self.quota.rate_per_s)
        self._updated = now

    def peek(self, count: float) -> Admission:
        self._refill()
        cost = min(count, self.quota.burst)
        if self._tokens >= cost:
            return Admission(True)
        return Admission(False, (cost - self._tokens) / self.quota.rate_per_s)

    def take(self, count: float) -> Admission:
        self._refill()
        cost = min(count, self.quota.burst)
        if self._tokens >= cost:
            self._tokens -= cost
            return Admission(True)
        return Admission(False, (cost - self._tokens) / self.quota.rate_per_s)

    def refund(self, count: float) -> None:
        """Give back what ``take(count)`` took (never beyond the burst)."""
        self._refill()
        self._tokens = min(self.quota.burst, self._tokens + min(count, self.quota.burst))


class TenantQuotas:
    """One bucket per tenant, created on its first request."""

    def __init__(self, quota_of: Callable[[str], Quota], clock: Clock = time.monotonic) -> None:
        self._quota_of = quota_of
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, tenant_id: str) -> TokenBucket:
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = TokenBucket(self._quota_of(tenant_id), self._clock)
        return bucket

    def admit(self, tenant_id: str, events: int) -> Admission:
        return self._bucket(tenant_id).take(events)

    def peek(self, tenant_id: str, events: int = 1) -> Admission:
        """Whether ``events`` would pass now; takes nothing."""
        return self._bucket(tenant_id).peek(events)

    def refund(self, tenant_id: str, events: int) -> None:
        """Give back the tokens an admitted batch of ``events`` took."""
        self._bucket(tenant_id).refund(events)
