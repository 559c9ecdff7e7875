"""Defined metrics kept live by the stream worker, against the events and the replay.

An experiment defines a ratio (revenue per session) and a windowed count before any
event is sent; the worker's ``MetricSums`` equal the sums computed straight from the
events. A third metric defined after every event was processed is rebuilt by the worker
from its unit states, and equals both the direct computation and ``liftstream replay``'s
back-fill from the raw log in the results service.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstream.settings import Settings
from schemas.control import ControlEvent, FlagDefined, MetricDefined, RolloutDefined
from schemas.experiment import MetricDefinition
from schemas.flags import Flag, rollout_exposure_key
from schemas.rollout import RolloutPlan
from services.broker.topics import end_offsets
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_metrics import (
    ORDERS_24H,
    RATIO,
    direct_sums,
    experiment_defined,
    metric_events,
)
from tests.integration.helpers_results import ResultsService, produce
from tests.integration.helpers_stream import AggregatesReader, AggregatesView, StreamWorker

pytestmark = pytest.mark.integration

ORDERS_6H = {"name": "orders_6h", "event": "purchase", "type": "count", "window_hours": 6}


def live_sums(
    view: AggregatesView, metric: str, key: str = "checkout"
) -> dict[str, tuple[float, ...]]:
    """Per variant (n, Σx, Σx², Σy, Σxy) of experiment ``key``, as ``direct_sums`` gives them."""
    found = {}
    for (tenant, experiment, variant, name), numbers in view.sums.items():
        if (tenant, experiment, name) == ("acme", key, metric):
            _, n, sum_x, sum_xx, sum_y, _, sum_xy, *_ = numbers
            found[variant] = (n, sum_x, sum_xx, sum_y, sum_xy)
    return found


def assert_equal_sums(got: dict[str, tuple[float, ...]], expected: dict[str, Any]) -> None:
    assert got.keys() == expected.keys()
    for variant, sums in expected.items():
        assert got[variant] == pytest.approx(sums, rel=1e-9), variant


def wait_for_metric(
    reader: AggregatesReader, metric: str, timeout: float = 60.0, key: str = "checkout"
) -> AggregatesView:
    deadline = time.monotonic() + timeout
    while True:
        reader.poll()
        view = reader.view()
        if live_sums(view, metric, key):
            return view
        assert time.monotonic() < deadline, f"no live sums of {metric} within {timeout}s"
        time.sleep(0.2)


def test_defined_metrics_are_kept_live_and_a_late_one_equals_its_replay(
    platform_settings: Settings, tmp_path: Path
) -> None:
    settings, topics = platform_settings, platform_settings.topics
    keys = create_tenant(settings.bootstrap, topics.control, "acme")
    produce(
        settings.bootstrap,
        topics.control,
        [(b"acme:checkout", experiment_defined(1, RATIO, ORDERS_24H).model_dump_json().encode())],
    )
    sent = metric_events()
    exposures, outcomes = sent
    produce(
        settings.bootstrap, topics.exposures, [(e.partition_key, e.to_json()) for e in exposures]
    )
    produce(settings.bootstrap, topics.outcomes, [(o.partition_key, o.to_json()) for o in outcomes])
    reader = AggregatesReader(settings)
    with StreamWorker(tmp_path / "worker.log") as worker:
        view = reader.wait_until_caught_up(worker)
        view = wait_for_metric(reader, "orders_24h")
        for metric in (RATIO, ORDERS_24H):
            definition = MetricDefinition.model_validate(metric)
            assert_equal_sums(live_sums(view, definition.name), direct_sums(sent, definition))

        # Defined once every event is processed: rebuilt from the unit states.
        produce(
            settings.bootstrap,
            topics.control,
            [
                (
                    b"acme:checkout",
                    experiment_defined(2, RATIO, ORDERS_24H, ORDERS_6H).model_dump_json().encode(),
                )
            ],
        )
        late = live_sums(wait_for_metric(reader, "orders_6h"), "orders_6h")
        assert worker.alive()
    assert_equal_sums(late, direct_sums(sent, MetricDefinition.model_validate(ORDERS_6H)))

    with ResultsService(
        tmp_path / "results.duckdb", api_key=keys["read"], admin_key=keys["admin"]
    ) as service:
        service.wait_until_loaded(
            end_offsets(settings.bootstrap, [topics.exposures, topics.outcomes, topics.control])
        )
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        path = "/v1/tenants/acme/replays"
        started = httpx.post(
            f"{service.url}{path}",
            json={"metric": "orders_6h", "experiment": "checkout"},
            headers=admin,
        )
        assert started.status_code == 202, started.text
        job = started.json()
        deadline = time.monotonic() + 60
        while job["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            job = service.json(f"{path}/{job['job_id']}")
        assert job["status"] == "done", job
    replayed = {
        row["variant_key"]: (row["n"], row["sum_x"], row["sum_xx"], row["sum_y"], row["sum_xy"])
        for row in job["results"]
    }
    assert_equal_sums(replayed, late)


def test_a_flag_rollouts_guardrail_is_kept_live_under_the_rollouts_exposure_key(
    platform_settings: Settings, tmp_path: Path
) -> None:
    """A flag has no metrics of its own: the tenant's ratio metric a rollout of the flag
    guards is kept live for the rollout's exposure key (its arms, where the SDK logs the
    flag's exposures while it runs), equal to the sums computed from the events."""
    settings, topics = platform_settings, platform_settings.topics
    create_tenant(settings.bootstrap, topics.control, "acme")
    metric = MetricDefinition.model_validate(RATIO)
    plan = RolloutPlan.model_validate(
        {
            "key": "checkout-rollout",
            "target": {"flag": "checkout"},
            "steps": [{"percent": 50}],
            "guardrails": [{"metric": metric.name, "direction": "increase"}],
        }
    )
    control: list[ControlEvent] = [
        FlagDefined(tenant_id="acme", author="k1", flag=Flag(key="checkout")),
        MetricDefined(tenant_id="acme", author="k1", version=1, metric=metric),
        RolloutDefined(tenant_id="acme", author="k1", plan=plan),
    ]
    produce(
        settings.bootstrap,
        topics.control,
        [(b"acme:checkout", event.model_dump_json().encode()) for event in control],
    )
    key = rollout_exposure_key("checkout", plan.key, plan.version)
    exposures, outcomes = metric_events()
    exposures = [e.model_copy(update={"experiment_key": key}) for e in exposures]
    sent = (exposures, outcomes)
    produce(
        settings.bootstrap, topics.exposures, [(e.partition_key, e.to_json()) for e in exposures]
    )
    produce(settings.bootstrap, topics.outcomes, [(o.partition_key, o.to_json()) for o in outcomes])
    reader = AggregatesReader(settings)
    with StreamWorker(tmp_path / "worker.log") as worker:
        reader.wait_until_caught_up(worker)
        view = wait_for_metric(reader, metric.name, key=key)
        assert worker.alive()
    assert_equal_sums(live_sums(view, metric.name, key), direct_sums(sent, metric))
