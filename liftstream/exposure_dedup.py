"""Exposure de-duplication per process: the same exposure is logged once, in bounded memory.

A service calls ``expose`` on every request that renders a variant, so most calls repeat
an exposure already logged. The stream only needs a unit's first exposure to an
experiment (and whether it saw more than one variant), so repeats are skipped: a key is
``(tenant, experiment, unit, variant)``, kept in an LRU of ``capacity`` keys (an evicted
key is logged again the next time, which the stream tolerates). ``capacity=0`` disables it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

ExposureKey = tuple[str, str, str, str]

DEFAULT_CAPACITY = 100_000


class ExposureDeduplicator:
    """Thread-safe LRU set of exposure keys seen by this process."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 (0 disables), got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: OrderedDict[ExposureKey, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: ExposureKey) -> bool:
        """True (and remember ``key``) unless ``key`` is among the recent keys."""
        if self.capacity == 0:
            return True
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                self.duplicates += 1
                return False
            self._seen[key] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: ExposureKey) -> None:
        """Undo ``first_time`` for an exposure that could not be handed to the transport."""
        with self._lock:
            self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)
