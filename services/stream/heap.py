"""Keep CPython's cycle collector off the unit states.

A worker holds millions of long-lived objects (unit states: sets, dicts, lists, tuples),
and every batch of consumed records adds tens of thousands of short-lived ones. The
cycle collector promotes survivors through its generations and, whenever the old
generation has grown by a quarter, traverses all of it: with a large state that is a
fifth of the worker's time, spent proving that unit states, which form no reference
cycles and are freed by reference counting, are not garbage.

So after each publication the worker collects the young generations and freezes what
survived (``gc.freeze``): the collector then only looks at objects younger than the last
publication. A cycle among frozen objects that later becomes garbage would be kept;
``full_interval`` bounds that: every so often everything is unfrozen and collected once.
"""

from __future__ import annotations

import gc
import time

DEFAULT_FULL_INTERVAL = 600.0


class FrozenHeap:
    """When to collect the young generations, freeze, or collect everything."""

    def __init__(self, full_interval: float = DEFAULT_FULL_INTERVAL) -> None:
        if full_interval <= 0:
            raise ValueError(f"full_interval: must be > 0 seconds, got {full_interval}")
        self.full_interval = full_interval
        self._last_full = time.monotonic()

    def settle(self) -> None:
        """Collect the young generations (everything, when a full collection is due),
        then freeze the survivors."""
        now = time.monotonic()
        if now - self._last_full >= self.full_interval:
            gc.unfreeze()
            gc.collect()
            self._last_full = now
        else:
            gc.collect(1)
        gc.freeze()
