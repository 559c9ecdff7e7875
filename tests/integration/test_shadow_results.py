"""A shadow test end to end: the SDK runs it, the real broker carries its observations, the
results service (real DuckDB file) reports them and gates the candidate's promotion.

The acceptance case: a candidate differing on 0.3% of inputs beyond a primary that
disagrees with itself on about 0.2% of runs (so the candidate mismatches on about 0.5%):
the interval for the mismatch beyond noise holds 0.3% and excludes 0.
"""

from __future__ import annotations

import os
import threading
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from liftstream.client import LiftstreamClient
from liftstream.settings import Settings
from liftstream.shadow import ShadowPool
from schemas.events import OutcomeEvent
from schemas.shadow import SHADOW_EVENT
from services.broker.topics import end_offsets
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_results import ResultsService, produce

pytestmark = pytest.mark.integration

#: Calls of the shadowed function; every call is shadowed (half candidate, half secondary).
CALLS = int(os.environ.get("LIFTSTREAM_SHADOW_CALLS", "40000"))


def _share(*parts: object) -> float:
    return zlib.crc32(":".join(map(str, parts)).encode()) / 2**32


def _in_worker() -> bool:
    return threading.current_thread().name.startswith("liftstream-shadow")


def primary(x: int) -> tuple[str, int]:
    """Right, except on 0.1% of (input, thread) pairs: two runs of it disagree on ~0.2%."""
    noisy = _share("noise", x, _in_worker()) < 0.001
    return ("primary", -x if noisy else x)


def candidate(x: int) -> tuple[str, int]:
    """The primary's noise, and wrong on 0.3% of inputs."""
    _, value = primary(x)
    return ("candidate", value + 1 if _share("bad", x) < 0.003 else value)


class Truth:
    """What the comparisons found, by run: the figures the service must report."""

    def __init__(self) -> None:
        self.runs = {"primary": [0, 0], "candidate": [0, 0]}  # [compared, mismatched]
        self.lock = threading.Lock()

    def compare(self, first: tuple[str, int], second: tuple[str, int]) -> bool:
        same = first[1] == second[1]
        with self.lock:
            counts = self.runs[second[0]]
            counts[0] += 1
            counts[1] += not same
        return same


def _shadow_traffic(settings: Settings) -> Truth:
    truth = Truth()
    with LiftstreamClient(
        "acme",
        settings.bootstrap,
        settings.namespace,
        shadow_pool=ShadowPool(workers=2, max_queue=CALLS, seed=14),
    ) as client:
        for x in range(CALLS):
            answer = client.shadow(
                "pricing",
                lambda x=x: primary(x),
                lambda x=x: candidate(x),
                truth.compare,
                sample=0.5,
                noise=0.5,
            )
            assert answer == primary(x)
        assert client.shadows.wait_idle(120)
        assert client.shadows.stats["pricing"].dropped == 0
        client.flush(60)
    return truth


def _malformed(settings: Settings) -> None:
    bad = OutcomeEvent(
        tenant_id="acme",
        unit_id="shadow:pricing:0",
        timestamp=datetime.now(UTC),
        event=SHADOW_EVENT,
        properties={"shadow": "pricing", "run": "candidate", "match": "yes", "primary_ms": -1},
    )
    produce(settings.bootstrap, settings.topics.outcomes, [(bad.partition_key, bad.to_json())])


def test_shadow_results_and_gate_through_the_broker_and_results_service(
    platform_settings: Settings, tmp_path: Path
) -> None:
    settings = platform_settings
    topics = settings.topics
    acme = create_tenant(settings.bootstrap, topics.control, "acme")
    globex = create_tenant(settings.bootstrap, topics.control, "globex")
    truth = _shadow_traffic(settings)
    _malformed(settings)
    with ResultsService(
        tmp_path / "results.duckdb", api_key=acme["read"], admin_key=acme["admin"]
    ) as service:
        service.wait_until_loaded(end_offsets(settings.bootstrap, [topics.outcomes]), 120)
        results: dict[str, Any] = service.json("/v1/tenants/acme/shadows/pricing")
        gate_ok = service.json("/v1/tenants/acme/shadows/pricing/gate?max_beyond_noise=0.01")
        gate_no = service.json("/v1/tenants/acme/shadows/pricing/gate?max_beyond_noise=0.001")
        unknown = service.get("/v1/tenants/acme/shadows/no-such-test")
        bad_level = service.get("/v1/tenants/acme/shadows/pricing?confidence=2")
        other_tenant = service.get("/v1/tenants/acme/shadows/pricing", globex["read"])

    compared, mismatched = truth.runs["candidate"]
    noise_compared, noise_mismatched = truth.runs["primary"]
    assert compared + noise_compared == CALLS
    # every observation arrived once: the service's counts are the comparisons' own
    assert (results["mismatch"]["n"], results["mismatch"]["count"]) == (compared, mismatched)
    assert (results["noise"]["n"], results["noise"]["count"]) == (
        noise_compared,
        noise_mismatched,
    )
    assert (results["observations"], results["malformed"]) == (CALLS, 1)
    beyond = results["beyond_noise"]
    assert beyond["low"] < 0.003 < beyond["high"], beyond
    assert beyond["low"] > 0, beyond  # the candidate differs beyond the noise floor
    assert results["candidate_errors"]["count"] == results["candidate_timeouts"]["count"] == 0
    median, p99 = results["latency"]
    assert median["ratio"] > 0 and median["low"] <= median["ratio"] <= median["high"]
    assert p99["pairs"] == compared and p99["ratio"] is not None

    assert gate_ok["allowed"] and gate_ok["upper"] < 0.01
    assert not gate_no["allowed"] and gate_no["upper"] > 0.001
    assert unknown.status_code == 404 and "no-such-test" in unknown.json()["detail"]
    assert bad_level.status_code == 422 and "confidence" in bad_level.text
    assert other_tenant.status_code in (401, 403)
