"""One tenant's /results latency while another tenant asks /daily through the year 9999.

Issue 10 measured, before reads were bounded: ``GET .../daily?through=2056-12-03`` with a
read key answered 12 MB in up to 10 s, and meanwhile another tenant's ``/results`` p99
went from 21 ms to 991 ms. This bench runs the results API (``create_app`` under uvicorn,
in this process, on a temporary DuckDB file) with two tenants:

- ``acme`` (hostile): ``--units`` units of one experiment over 28 days with about three
  outcomes each (``bench.daily_snapshots``'s generator), asking
  ``/daily?through=9999-12-31`` from ``--hostile`` concurrent clients without pause;
- ``alice`` (bystander): a small experiment whose ``/results`` is read in a loop.

Printed: alice's ``/results`` p50/p99 over ``--requests`` requests alone (the baseline,
same run), then the same while acme hammers, and acme's answers (days, bytes, time).

Run: ``.venv/bin/python -m bench.results_isolation [--units 100000] [--requests 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from bench.daily_snapshots import _fill
from schemas.aggregates import MetricStats, VariantUnits
from schemas.control import ExperimentDefined
from schemas.experiment import Aggregation, Experiment
from services.control_domain.api_keys import KeyRecord
from services.results.api import create_app

KEYS = {
    "acme": KeyRecord("k1", "acme", "read", revoked=False, label=""),
    "alice": KeyRecord("k2", "alice", "read", revoked=False, label=""),
}
EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
    }
)


def _define(store: AnalyticsStore) -> None:
    now = datetime.now(UTC)
    batch = LoadBatch()
    for offset, tenant in enumerate(("acme", "alice")):
        event = ExperimentDefined(tenant_id=tenant, author="bench", experiment=EXPERIMENT)
        batch.add_control("ns.control", 0, offset, event)
    for offset, variant in enumerate(("control", "treatment")):
        batch.add_aggregate(
            "ns.aggregates",
            0,
            2 * offset,
            VariantUnits(
                source_partition=0,
                updated_at=now,
                tenant_id="alice",
                experiment_key="checkout",
                variant_key=variant,
                units=5000,
            ),
        )
        batch.add_aggregate(
            "ns.aggregates",
            0,
            2 * offset + 1,
            MetricStats(
                source_partition=0,
                updated_at=now,
                tenant_id="alice",
                experiment_key="checkout",
                variant_key=variant,
                event="purchase",
                aggregation=Aggregation.CONVERSION,
                sum=500.0 + offset * 40,
                sum_sq=500.0 + offset * 40,
            ),
        )
    store.load(batch)


class _Server:
    def __init__(self, store: AnalyticsStore) -> None:
        app = create_app(store, KEYS.get)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


def _alice(url: str, requests: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer alice"}) as http:
        for _ in range(requests):
            started = time.perf_counter()
            answer = http.get("/v1/tenants/alice/experiments/checkout/results")
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return times


def _quantiles(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hostile", type=int, default=2, help="concurrent /daily clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = AnalyticsStore(Path(folder) / "bench.duckdb")
        exposures, outcomes = _fill(store, args.units)
        _define(store)
        server = _Server(store)
        print(f"acme: {args.units:,} units, {exposures + outcomes:,} events over 28 days")
        _alice(server.url, 20)  # warm up
        alone = _alice(server.url, args.requests)

        stop = threading.Event()
        answers: list[tuple[int, int, int, float]] = []

        def hammer() -> None:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": "Bearer acme"}, timeout=60
            ) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    answer = http.get(
                        "/v1/tenants/acme/experiments/checkout/daily?through=9999-12-31"
                    )
                    days = len(answer.json().get("days", [])) if answer.status_code == 200 else 0
                    elapsed = time.perf_counter() - started
                    answers.append((answer.status_code, days, len(answer.content), elapsed))

        hostile = [threading.Thread(target=hammer) for _ in range(args.hostile)]
        for thread in hostile:
            thread.start()
        while not answers:
            time.sleep(0.05)
        loaded = _alice(server.url, args.requests)
        stop.set()
        for thread in hostile:
            thread.join()
        server.stop()
        store.close()

    p50, p99 = _quantiles(alone)
    q50, q99 = _quantiles(loaded)
    print(f"alice /results alone (baseline):       p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    print(
        f"alice /results while acme hammers:     p50 {q50:6.1f} ms  p99 {q99:6.1f} ms"
        f"  ({q99 / p99:.1f}x baseline p99)"
    )
    statuses = sorted({status for status, *_ in answers})
    print(
        f"acme /daily?through=9999-12-31: {len(answers)} answers, statuses {statuses}, "
        f"{max(days for _, days, _, _ in answers)} days, "
        f"{max(size for _, _, size, _ in answers) / 1024:.0f} KiB, "
        f"median {statistics.median(t for *_, t in answers):.2f} s, "
        f"max {max(t for *_, t in answers):.2f} s"
    )


if __name__ == "__main__":
    main()
