"""The one way tests wait for something that happens elsewhere (another process, Kafka)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.2,
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy,
    and return that; after ``timeout`` seconds fail with ``what`` (a text, or a function
    giving one, e.g. a log tail read at that moment). ``condition`` may raise to fail at
    once (a process that exited)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s: {said}")
        time.sleep(interval)
