"""The results service against the real broker and a real DuckDB file.

It loads raw events (each stored once however often it was delivered), aggregates
(latest record per key wins), experiment definitions and dead letters; serves progress,
experiments and a scorecard whose numbers match statsmodels on the unit-level data the
aggregates were built from; resumes exactly where it stopped; and rebuilds an identical
file from the log after the file is deleted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pytest
from statsmodels.stats.proportion import proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from liftstream.settings import Settings
from schemas.aggregates import MetricStats, StreamProgress, VariantUnits
from schemas.control import ExperimentDefined
from schemas.deadletter import DeadLetter
from schemas.errors import FieldError
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Aggregation, Experiment
from services.broker.topics import end_offsets
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_results import ResultsService, produce

pytestmark = pytest.mark.integration

RTOL = 1e-9
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CHECKOUT = {
    "key": "checkout",
    "name": "Checkout button",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [
        {"name": "purchased", "event": "purchase", "type": "conversion"},
        {"name": "revenue", "event": "purchase", "type": "sum"},
    ],
}


def _definition(tenant: str, version: int, **changes: Any) -> ExperimentDefined:
    experiment = Experiment.model_validate({**CHECKOUT, "version": version, **changes})
    return ExperimentDefined(
        tenant_id=tenant,
        author="ana@example.com",
        reason=f"version {version}",
        occurred_at=START + timedelta(minutes=version),
        experiment=experiment,
    )


def _raw_events() -> tuple[list[tuple[bytes | None, bytes]], list[tuple[bytes | None, bytes]]]:
    """(exposure messages, outcome messages): 30 units, re-deliveries, 2 invalid messages."""
    exposures: list[tuple[bytes | None, bytes]] = []
    outcomes: list[tuple[bytes | None, bytes]] = []
    for index in range(30):
        exposure = ExposureEvent(
            tenant_id="acme",
            unit_id=f"user-{index}",
            timestamp=START + timedelta(seconds=index),
            experiment_key="checkout",
            variant_key="control" if index % 2 else "treatment",
            attributes={"plan": "pro" if index % 3 else "free", "seats": index},
        )
        exposures.append((exposure.partition_key, exposure.to_json()))
        if index % 4 == 0:
            outcome = OutcomeEvent(
                tenant_id="acme",
                unit_id=f"user-{index}",
                timestamp=START + timedelta(minutes=5, seconds=index),
                event="purchase",
                value=10.0 + index,
                properties={"currency": "EUR"},
            )
            outcomes.append((outcome.partition_key, outcome.to_json()))
    exposures += exposures[:5]  # re-delivered by a retrying producer
    outcomes += outcomes[:2]
    exposures.append((b"acme:broken", b"{not json"))
    exposures.append((b"acme:user-x", b'{"type": "exposure", "tenant_id": "acme"}'))
    # No event_id: the loader derives one from the log position, the same on every rebuild.
    exposures.append(
        (
            b"acme:user-anon",
            json.dumps(
                {
                    "type": "exposure",
                    "tenant_id": "acme",
                    "unit_id": "user-anon",
                    "timestamp": "2026-03-02T10:00:00+01:00",
                    "experiment_key": "checkout",
                    "variant_key": "control",
                }
            ).encode(),
        )
    )
    return exposures, outcomes


def _unit_level_data() -> dict[str, dict[str, npt.NDArray[np.float64]]]:
    """What the stream would have seen per unit: converted (0/1) and revenue."""
    rng = np.random.default_rng(2026)
    data = {}
    for variant, n, rate in [("control", 600, 0.10), ("treatment", 640, 0.15)]:
        converted = (rng.random(n) < rate).astype(float)
        data[variant] = {"converted": converted, "revenue": converted * rng.gamma(2.0, 20.0, n)}
    return data


def _aggregate_records(
    data: dict[str, dict[str, npt.NDArray[np.float64]]],
) -> list[VariantUnits | MetricStats | StreamProgress]:
    """Partials of two stream partitions, each first published stale, then final."""
    records: list[VariantUnits | MetricStats | StreamProgress] = []
    for stale in (True, False):
        for variant, values in data.items():
            for partition, units in enumerate(
                np.array_split(np.arange(len(values["converted"])), 2)
            ):
                shown = units[: len(units) // 2] if stale else units
                common: dict[str, Any] = {
                    "source_partition": partition,
                    "updated_at": START + timedelta(hours=1 + (not stale)),
                    "tenant_id": "acme",
                    "experiment_key": "checkout",
                    "variant_key": variant,
                }
                records.append(VariantUnits(**common, units=len(shown), excluded_units=1))
                for metric, aggregation in (
                    ("converted", Aggregation.CONVERSION),
                    ("revenue", Aggregation.SUM),
                ):
                    x = values[metric][shown]
                    records.append(
                        MetricStats(
                            **common,
                            event="purchase",
                            aggregation=aggregation,
                            sum=float(x.sum()),
                            sum_sq=float((x * x).sum()),
                        )
                    )
    records.append(
        StreamProgress(source_partition=0, updated_at=START, next_offsets={"ns.exposures": 17})
    )
    return records


def _publish_log(
    settings: Settings,
) -> tuple[dict[str, dict[str, npt.NDArray[np.float64]]], dict[str, dict[str, str]]]:
    """The unit-level data behind the aggregates, and tenant -> role -> API key."""
    topics, bootstrap = settings.topics, settings.bootstrap
    keys = {
        tenant: create_tenant(bootstrap, topics.control, tenant)
        for tenant in ("acme", "globex", "initech")
    }
    exposures, outcomes = _raw_events()
    produce(bootstrap, topics.exposures, exposures)
    produce(bootstrap, topics.outcomes, outcomes)
    definitions = [
        _definition("acme", 1),
        _definition("acme", 2, name="Checkout button, green"),
        _definition("globex", 1, variants=[{"key": "a", "weight": 50}, {"key": "b", "weight": 50}]),
    ]
    produce(
        bootstrap,
        topics.control,
        [(d.partition_key, d.model_dump_json().encode()) for d in definitions],
    )
    data = _unit_level_data()
    produce(
        bootstrap,
        topics.aggregates,
        [(r.record_key, r.model_dump_json().encode()) for r in _aggregate_records(data)],
    )
    letter = DeadLetter(
        stage="collector",
        source_topic=topics.exposures,
        reason="unit_id: Field required",
        errors=[FieldError(field="unit_id", reason="Field required")],
        payload='{"type": "exposure"}',
        failed_at=START,
    )
    produce(bootstrap, topics.deadletter, [(b"acme:?", letter.model_dump_json().encode())])
    return data, keys


def _all_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.exposures, t.outcomes, t.aggregates, t.control, t.deadletter]


def _table_dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, read through a read-only connection."""
    connection = duckdb.connect(str(db_path), read_only=True)
    try:
        tables = [row[0] for row in connection.execute("SHOW TABLES").fetchall()]
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in tables
        }
    finally:
        connection.close()


def _assert_scorecard_matches_statsmodels(
    scorecard: dict[str, Any], data: dict[str, dict[str, npt.NDArray[np.float64]]]
) -> None:
    control, treatment = data["control"], data["treatment"]
    assert scorecard["sample_ratio"]["observed_units"] == {"control": 600, "treatment": 640}
    assert scorecard["excluded_units"] == 4  # 1 per (variant, partition) record
    metrics = {m["metric"]: m for m in scorecard["metrics"]}
    purchased = metrics["purchased"]
    assert purchased["test"] == "two_proportion_z"
    _, p_value = proportions_ztest(
        [treatment["converted"].sum(), control["converted"].sum()], [640, 600]
    )
    assert purchased["p_value"] == pytest.approx(p_value, rel=RTOL)
    assert purchased["treatment"]["mean"] == pytest.approx(treatment["converted"].mean(), rel=RTOL)
    revenue = metrics["revenue"]
    assert revenue["test"] == "welch_t"
    compare = CompareMeans(DescrStatsW(treatment["revenue"]), DescrStatsW(control["revenue"]))
    _, p_value, _ = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(usevar="unequal")
    assert revenue["p_value"] == pytest.approx(p_value, rel=RTOL)
    effect = revenue["absolute_effect"]
    assert (effect["ci_low"], effect["ci_high"]) == pytest.approx((low, high), rel=RTOL)


def test_loads_the_log_once_serves_results_resumes_and_rebuilds(
    platform_settings: Settings, tmp_path: Path
) -> None:
    settings = platform_settings
    data, keys = _publish_log(settings)
    db_path = tmp_path / "results.duckdb"
    acme_key = keys["acme"]["read"]
    acme_admin = keys["acme"]["admin"]
    topics = settings.topics
    exposures_url = "/v1/tenants/acme/experiments"

    with ResultsService(db_path, api_key=acme_key, admin_key=acme_admin) as service:
        progress = service.wait_until_loaded(end_offsets(settings.bootstrap, _all_topics(settings)))
        # every tenant's topics and offsets: an admin key, not a read key
        assert service.get("/v1/progress").status_code == 403
        assert progress["rejected"] == {topics.exposures: 2}
        assert progress["stream"] == {"ns.exposures": {"0": 17}}

        experiments = service.json(exposures_url)
        assert [(e["key"], e["experiment"]["version"]) for e in experiments] == [("checkout", 2)]
        assert experiments[0]["experiment"]["name"] == "Checkout button, green"
        globex = service.get("/v1/tenants/globex/experiments/checkout", keys["globex"]["read"])
        assert [v["key"] for v in globex.json()["experiment"]["variants"]] == ["a", "b"]
        assert service.get("/v1/tenants/globex/experiments/checkout").status_code == 403
        missing = service.get("/v1/tenants/acme/experiments/nope/results")
        assert missing.status_code == 404
        assert "'nope'" in missing.json()["detail"] and "'acme'" in missing.json()["detail"]
        initech = service.get("/v1/tenants/initech/experiments", keys["initech"]["admin"])
        assert initech.json() == []

        results_url = "/v1/tenants/acme/experiments/checkout/results"
        scorecard = service.json(f"{results_url}?scale=absolute")
        assert scorecard["scale"] == "absolute"
        _assert_scorecard_matches_statsmodels(scorecard, data)
        assert scorecard["trustworthy"] is True
        relative = service.json(results_url)  # the default: the relative lift's scale
        assert relative["scale"] == "relative"
        assert {m["scale"] for m in relative["metrics"]} == {"relative"}
        assert [m["relative_effect"] for m in relative["metrics"]] == [
            m["relative_effect"] for m in scorecard["metrics"]
        ]
        bad_scale = service.get(f"{results_url}?scale=log")
        assert bad_scale.status_code == 422 and "scale" in bad_scale.text
        assert service.json("/openapi.json")["info"]["title"] == "liftstream results"
        assert service.stop() == 0  # SIGTERM: clean shutdown

    tables = _table_dump(db_path)
    assert len(tables["exposures"]) == 31  # 30 units + the one without event_id, once each
    assert len(tables["outcomes"]) == 8
    assert len(tables["control_events"]) == 3 + 3 * 4  # definitions; tenants and their keys
    assert len(tables["deadletters"]) == 1
    assert len(tables["load_rejections"]) == 2
    assert len(tables["variant_units"]) == 4  # latest per (variant, partition)
    assert {row[4] for row in tables["variant_units"]} == {300, 320}  # units, not the stale half

    # Resume: new messages (one re-delivered) are loaded once, nothing is loaded twice.
    extra = [
        ExposureEvent(
            tenant_id="acme",
            unit_id=f"late-{index}",
            timestamp=START + timedelta(hours=3),
            experiment_key="checkout",
            variant_key="treatment",
        )
        for index in range(3)
    ]
    messages = [(e.partition_key, e.to_json()) for e in extra]
    produce(settings.bootstrap, topics.exposures, [*messages, messages[0]])
    with ResultsService(db_path, api_key=acme_key, admin_key=acme_admin) as service:
        service.wait_until_loaded(end_offsets(settings.bootstrap, _all_topics(settings)))
        resumed_scorecard = service.json("/v1/tenants/acme/experiments/checkout/results")
        resumed_progress = service.get("/v1/progress", acme_admin).json()
    resumed = _table_dump(db_path)
    assert len(resumed["exposures"]) == 34
    assert resumed["load_rejections"] == tables["load_rejections"]

    # Rebuild: a deleted file is reloaded from offset 0 into the very same content.
    for path in (db_path, db_path.with_name(db_path.name + ".wal")):
        path.unlink(missing_ok=True)
    with ResultsService(db_path, api_key=acme_key, admin_key=acme_admin) as service:
        service.wait_until_loaded(end_offsets(settings.bootstrap, _all_topics(settings)))
        assert service.json("/v1/tenants/acme/experiments/checkout/results") == resumed_scorecard
        assert service.get("/v1/progress", acme_admin).json() == resumed_progress
    assert _table_dump(db_path) == resumed


def test_a_second_service_on_the_same_file_is_refused_with_a_clear_error(
    platform_settings: Settings, tmp_path: Path
) -> None:
    db_path = tmp_path / "owned.duckdb"
    with ResultsService(db_path) as owner:
        second = ResultsService(db_path, tmp_path / "second.log")
        with pytest.raises(RuntimeError, match="exited at start") as refused:
            second.start(timeout=30)
        assert second.stop() == 1
        assert "cannot open" in str(refused.value) and "one writing process" in str(refused.value)
        assert owner.get("/healthz").status_code == 200
