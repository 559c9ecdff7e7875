"""How long the SDK waits before retrying a request: full-jitter backoff, ``Retry-After``.

Full jitter (a uniform wait between 0 and ``min(cap, base * 2**attempt)``) spreads the
retries of many clients that failed together, so a collector coming back after an
outage is not hit by all of them at the same instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: A server's ``Retry-After`` is honoured up to this many seconds (guards against typos).
MAX_RETRY_AFTER_S = 300.0
_MAX_EXPONENT = 60  # 2.0**60 is far past any cap, and still a finite float


def backoff_delay(attempt: int, base_s: float, max_s: float, random: Callable[[], float]) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    return random() * min(max_s, base_s * 2.0 ** min(attempt, _MAX_EXPONENT))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (delay-seconds or an HTTP date), else None.

    Past dates give 0; waits are capped at ``MAX_RETRY_AFTER_S``.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
