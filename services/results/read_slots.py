"""How many heavy reads each tenant may have running at once on the results service.

A heavy read (``/daily``, ``/health``: queries over the tenant's raw log) holds one of its
tenant's ``MAX_HEAVY_READS_PER_TENANT`` slots while it runs; a request finding none free
is answered 429 with Retry-After at once, without touching DuckDB. With the query time
budget, this bounds what one tenant's reads can take from the others: at most that many
queries at a time, each at most ``QUERY_BUDGET_S`` long.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.limits import MAX_HEAVY_READS_PER_TENANT


class TooManyReads(RuntimeError):
    """The tenant already has its heavy reads running."""

    def __init__(self, tenant_id: str, limit: int) -> None:
        super().__init__(
            f"tenant '{tenant_id}' already has {limit} heavy read(s) (/daily, /health) "
            "running; wait for it to finish"
        )


class ReadSlots:
    def __init__(self, per_tenant: int = MAX_HEAVY_READS_PER_TENANT) -> None:
        if per_tenant < 1:
            raise ValueError(f"per_tenant: must be at least 1, got {per_tenant}")
        self.per_tenant = per_tenant
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, tenant_id: str) -> Iterator[None]:
        """Hold one of the tenant's slots for the block; ``TooManyReads`` if none is free."""
        with self._lock:
            if self._running[tenant_id] >= self.per_tenant:
                raise TooManyReads(tenant_id, self.per_tenant)
            self._running[tenant_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[tenant_id] -= 1
                if not self._running[tenant_id]:
                    del self._running[tenant_id]
