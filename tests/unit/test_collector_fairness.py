"""Sharing the collector's event loop: slices that let other requests in, per-tenant gates."""

from __future__ import annotations

import asyncio

import pytest

from services.collector.fairness import TenantGates, in_slices


def test_a_big_batch_lets_another_request_run_between_its_slices() -> None:
    log: list[str] = []

    async def big() -> list[int]:
        def work(index: int) -> int:
            log.append("big")
            return index * 2

        return await in_slices(200, work, slice_size=50)

    async def small() -> None:
        await asyncio.sleep(0)
        log.append("small")

    async def scenario() -> list[int]:
        results, _ = await asyncio.gather(big(), small())
        return results

    results = asyncio.run(scenario())
    assert results == [index * 2 for index in range(200)]
    assert log.index("small") <= 100  # after one or two slices of 50, not after all 200


def test_a_tenant_has_at_most_its_share_of_requests_working_and_others_are_not_held() -> None:
    gates = TenantGates(per_tenant=2)
    working = {"flood": 0, "calm": 0}
    most = {"flood": 0, "calm": 0}

    async def request(tenant: str) -> None:
        async with gates.of(tenant):
            working[tenant] += 1
            most[tenant] = max(most[tenant], working[tenant])
            await asyncio.sleep(0.001)
            working[tenant] -= 1

    async def scenario() -> None:
        await asyncio.gather(*(request("flood") for _ in range(10)), request("calm"))

    asyncio.run(scenario())
    assert most == {"flood": 2, "calm": 1}


def test_a_gate_needs_room_for_one_request() -> None:
    with pytest.raises(ValueError, match="per_tenant"):
        TenantGates(per_tenant=0)
