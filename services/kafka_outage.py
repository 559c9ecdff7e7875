"""Riding out a Kafka outage: retry what failed, for a bounded time, instead of exiting.

A broker restart, a network blip or a rolling upgrade make every Kafka call fail for a
while. A process that exits then turns a short outage into a restart storm (and the
supervisor's give-up rule into a stopped platform), so the platform's long-running Kafka
clients retry with capped exponential back-off. They give up, and exit for the
supervisor to restart them, only after ``LIFTSTREAM_KAFKA_OUTAGE_S`` seconds (default
600) of failing without one success: then something other than an outage is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from services.settings import OUTAGE_ENV, ServiceSettings, load

log = logging.getLogger(__name__)

OUTAGE_VAR = OUTAGE_ENV
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0

T = TypeVar("T")


class OutageTooLong(RuntimeError):
    """Kafka calls kept failing for longer than the tolerated outage."""


def outage_tolerance_s() -> float:
    """``LIFTSTREAM_KAFKA_OUTAGE_S`` (seconds, > 0), else the default."""
    return load(ServiceSettings).kafka_outage_s


@dataclass
class OutageWindow:
    """How long one kind of Kafka call has been failing; raises once it is too long."""

    what: str
    tolerance_s: float
    _since: float | None = None

    @property
    def failing_for_s(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def failed(self, error: BaseException) -> None:
        """Record a failure; raise ``OutageTooLong`` past the tolerance."""
        if self._since is None:
            self._since = time.monotonic()
        if self.failing_for_s > self.tolerance_s:
            raise OutageTooLong(
                f"{self.what} kept failing for {self.failing_for_s:.0f}s "
                f"(tolerated: {self.tolerance_s:.0f}s): {error!r}"
            ) from error
        log.warning(
            "%s failed (%.0fs into the outage; retrying): %r", self.what, self.failing_for_s, error
        )

    def succeeded(self) -> None:
        if self._since is not None:
            log.info("%s works again after %.1fs", self.what, self.failing_for_s)
        self._since = None


async def retry_async(
    attempt: Callable[[], Awaitable[T]], what: str, tolerance_s: float | None = None
) -> T:
    """``await attempt()`` until it succeeds, backing off between failures; raise
    ``OutageTooLong`` once it has failed for longer than ``tolerance_s``."""
    window = OutageWindow(what, outage_tolerance_s() if tolerance_s is None else tolerance_s)
    backoff = INITIAL_BACKOFF_S
    while True:
        try:
            result = await attempt()
        except (asyncio.CancelledError, OutageTooLong):
            raise
        except Exception as error:
            window.failed(error)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
            continue
        window.succeeded()
        return result
