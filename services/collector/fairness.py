"""Sharing the collector's one event loop fairly between tenants.

The costly part of a request (checking each event, serialising the records, handing them
to the producer) runs on the event loop in slices of ``SLICE`` events, yielding to the
loop between slices: another tenant's request that is ready is served after at most one
slice of a big batch (a fraction of a millisecond), not after the whole batch. A worker
thread does worse here: the GIL returns to the loop only every few milliseconds, and a
request needs the loop several times (read, validate, produce, answer).

``TenantGates`` lets at most ``per_tenant`` requests of one tenant do that work at once,
so a tenant with many admitted requests in flight gets no more turns of the loop than
``per_tenant`` requests would; the others wait their turn without costing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Events per slice: about 0.3 ms of validation and serialisation on a 2-core machine.
SLICE = 20
#: Events per slice of the fast path's checks (``fast_path.doubtful``, ~0.3 µs an event:
#: ~0.15 ms a slice, no longer than a ``SLICE``). Each yield costs a turn of the loop
#: (tens of µs), paid by every request whether or not another one is waiting.
FAST_SLICE = 500


async def in_slices(count: int, work: Callable[[int], T], slice_size: int = SLICE) -> list[T]:
    """``[work(0), ..., work(count - 1)]``, yielding to the event loop between slices."""
    results: list[T] = []
    for start in range(0, count, slice_size):
        if start:
            await asyncio.sleep(0)
        results.extend(work(index) for index in range(start, min(count, start + slice_size)))
    return results


async def map_in_slices(work: Callable[[T], R], items: list[T], slice_size: int = SLICE) -> list[R]:
    """``[work(item) for item in items]``, yielding to the event loop between slices."""
    results: list[R] = []
    for start in range(0, len(items), slice_size):
        if start:
            await asyncio.sleep(0)
        results.extend(map(work, items[start : start + slice_size]))
    return results


class TenantGates:
    """One semaphore per tenant, created on its first request."""

    def __init__(self, per_tenant: int) -> None:
        if per_tenant < 1:
            raise ValueError(f"per_tenant must be at least 1, not {per_tenant}")
        self._per_tenant = per_tenant
        self._gates: dict[str, asyncio.Semaphore] = {}

    def of(self, tenant_id: str) -> asyncio.Semaphore:
        gate = self._gates.get(tenant_id)
        if gate is None:
            gate = self._gates[tenant_id] = asyncio.Semaphore(self._per_tenant)
        return gate
