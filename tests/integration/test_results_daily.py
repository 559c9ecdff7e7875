"""The results service's daily snapshots, against the real broker and a real DuckDB file:
each day shows the cumulative units and sums as of its end, an outcome published last
but dated day 1 counts on day 1, a unit exposed to a second variant on day 2 is excluded
from day 2 only, each day's p-value is the one of its cumulative counts, and the route is
tenant-scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from statsmodels.stats.proportion import proportions_ztest

from liftstream.settings import Settings
from schemas.control import ExperimentDefined
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment
from services.broker.topics import end_offsets
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_results import ResultsService, produce

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
CHECKOUT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [
        {"name": "purchased", "event": "purchase", "type": "conversion"},
        {"name": "revenue", "event": "purchase", "type": "sum"},
    ],
}


def _message(event: ExposureEvent | OutcomeEvent) -> tuple[bytes | None, bytes]:
    return event.partition_key, event.to_json()


def _exposure(unit: str, variant: str, moment: datetime) -> tuple[bytes | None, bytes]:
    return _message(
        ExposureEvent(
            tenant_id="acme",
            unit_id=unit,
            timestamp=moment,
            experiment_key="checkout",
            variant_key=variant,
        )
    )


def _purchase(unit: str, moment: datetime, value: float) -> tuple[bytes | None, bytes]:
    return _message(
        OutcomeEvent(
            tenant_id="acme", unit_id=unit, timestamp=moment, event="purchase", value=value
        )
    )


def _publish(settings: Settings) -> dict[str, str]:
    """40 units on day 1 (odd: control), 10 control buyers on day 1, 10 treatment buyers
    on day 2, a unit switching variant on day 2, and a day-1 purchase published last.
    Returns acme's keys by role."""
    topics, bootstrap = settings.topics, settings.bootstrap
    keys = create_tenant(bootstrap, topics.control, "acme")
    definition = ExperimentDefined(
        tenant_id="acme",
        author="ana@example.com",
        reason="launch",
        occurred_at=DAY1,
        experiment=Experiment.model_validate(CHECKOUT),
    )
    produce(
        bootstrap,
        topics.control,
        [(definition.partition_key, definition.model_dump_json().encode())],
    )
    exposures, outcomes = [], []
    for index in range(40):
        unit, moment = f"user-{index}", DAY1 + timedelta(minutes=index)
        exposures.append(_exposure(unit, "control" if index % 2 else "treatment", moment))
        if index % 4 == 1:
            outcomes.append(_purchase(unit, moment + timedelta(hours=1), 10.0))
        elif index % 4 == 0:
            outcomes.append(_purchase(unit, DAY2 + timedelta(hours=1), 20.0))
    exposures.append(_exposure("switcher", "control", DAY1))
    exposures.append(_exposure("switcher", "treatment", DAY2))
    produce(bootstrap, topics.exposures, exposures)
    produce(bootstrap, topics.outcomes, outcomes)
    produce(bootstrap, topics.outcomes, [_purchase("user-3", DAY1 + timedelta(hours=5), 4.0)])
    return keys


def _variants(day: dict[str, Any]) -> dict[str, tuple[int, int, dict[str, tuple[float, float]]]]:
    return {
        v["variant_key"]: (
            v["units"],
            v["excluded_units"],
            {s["aggregation"]: (s["sum"], s["sum_sq"]) for s in v["stats"]},
        )
        for v in day["variants"]
    }


def test_daily_snapshots_from_the_loaded_log(platform_settings: Settings, tmp_path: Path) -> None:
    settings = platform_settings
    keys = _publish(settings)
    topics = [settings.topics.control, settings.topics.exposures, settings.topics.outcomes]
    with ResultsService(
        tmp_path / "daily.duckdb", api_key=keys["read"], admin_key=keys["admin"]
    ) as service:
        service.wait_until_loaded(end_offsets(settings.bootstrap, topics))
        daily = service.json("/v1/tenants/acme/experiments/checkout/daily")

        assert [day["day"] for day in daily["days"]] == ["2026-03-02", "2026-03-03"]
        first, second = daily["days"]
        assert _variants(first) == {
            "control": (21, 0, {"conversion": (11, 11), "count": (11, 11), "sum": (104, 1016)}),
            "treatment": (20, 0, dict.fromkeys(("conversion", "count", "sum"), (0, 0))),
        }
        assert _variants(second) == {
            "control": (20, 1, {"conversion": (11, 11), "count": (11, 11), "sum": (104, 1016)}),
            "treatment": (20, 0, {"conversion": (10, 10), "count": (10, 10), "sum": (200, 4000)}),
        }
        assert (second["total_units"], second["excluded_units"]) == (40, 1)
        purchased = {m["metric"]: m for m in second["metrics"]}["purchased"]
        _, p_value = proportions_ztest([10, 11], [20, 20])
        assert purchased["variant_key"] == "treatment"
        assert purchased["p_value"] == pytest.approx(p_value, rel=1e-9)
        assert purchased["sequential_p_value"] is not None

        assert daily["clamped"] is None
        # days after the last event add nothing: the answer ends with the data
        for through in ("2026-03-05", "9999-12-31"):
            later = service.json(f"/v1/tenants/acme/experiments/checkout/daily?through={through}")
            assert later["days"] == daily["days"]
            assert "2026-03-03" in later["clamped"] and through in later["clamped"]
        from_day_2 = service.json("/v1/tenants/acme/experiments/checkout/daily?since=2026-03-03")
        assert from_day_2["days"] == [second]  # cumulative: day 1 still counts
        for bad in ("through=soon", "since=NaN", "since=1e300", "through=2026-02-30"):
            answer = service.get(f"/v1/tenants/acme/experiments/checkout/daily?{bad}")
            name = bad.split("=")[0]
            assert answer.status_code == 422, (bad, answer.text)
            assert [error["field"] for error in answer.json()["errors"]] == [name], answer.text
        assert service.get("/v1/tenants/acme/experiments/nope/daily").status_code == 404
        assert service.get("/v1/tenants/globex/experiments/checkout/daily").status_code == 403
