"""Canned answers of the results service for the CLI's tests (``results_url`` in
``tests/unit/conftest.py`` serves them over HTTP)."""

from __future__ import annotations

import json
from datetime import date
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from schemas.experiment import Aggregation
from schemas.results import (
    ArmSummary,
    BayesianResult,
    DailyResults,
    DayResults,
    Interval,
    MetricComparison,
    MetricDay,
    SampleRatioCheck,
    Scorecard,
    SequentialResult,
    VariantDay,
)

SCORECARD = Scorecard(
    tenant_id="acme",
    experiment_key="checkout-button",
    experiment_version=2,
    status="running",
    control_variant="control",
    confidence_level=0.95,
    total_units=20_000,
    excluded_units=3,
    sample_ratio=SampleRatioCheck(
        observed_units={"control": 10_030, "treatment": 9_970},
        expected_share={"control": 0.5, "treatment": 0.5},
        p_value=0.67,
        threshold=0.001,
        srm_detected=False,
    ),
    trustworthy=True,
    warnings=["only 2 days of data"],
    metrics=[
        MetricComparison(
            metric="conversion",
            event="purchase",
            aggregation=Aggregation.CONVERSION,
            role="primary",
            direction="increase",
            test="two_proportion_z",
            scale="relative",
            control=ArmSummary(variant_key="control", units=10_030, mean=0.1002),
            treatment=ArmSummary(variant_key="treatment", units=9_970, mean=0.1297),
            absolute_effect=Interval(estimate=0.0295, ci_low=0.0207, ci_high=0.0383),
            relative_effect=Interval(estimate=0.294, ci_low=0.196, ci_high=0.392),
            p_value=3e-11,
            significant=True,
            verdict="better",
            adjusted_p_value=0.0312,
            adjusted_effect=Interval(estimate=0.294, ci_low=0.173, ci_high=0.415),
            adjusted_confidence_level=0.9875,
            sequential=SequentialResult(
                p_value=0.004,
                confidence_sequence=Interval(estimate=0.0295, ci_low=0.011, ci_high=0.048),
                mixing_variance=1e-4,
                planned_units=10_000,
                may_stop=True,
            ),
            bayesian=BayesianResult(
                prior="Beta(1, 1) prior on each arm's conversion rate",
                chance_to_beat_control=0.973,
                expected_loss_ship=0.0001,
                expected_loss_keep=0.03,
            ),
        ),
        MetricComparison(
            metric="page_views",
            event="page_view",
            aggregation=Aggregation.COUNT,
            role="guardrail",
            direction="increase",
            test="welch_t",
            scale="relative",
            control=ArmSummary(variant_key="control", units=10_030, mean=None),
            treatment=ArmSummary(variant_key="treatment", units=9_970, mean=None),
            absolute_effect=None,
            relative_effect=None,
            p_value=None,
            significant=False,
            verdict="not_computable",
            reason="no variance",
            reason_code="zero_variance",
        ),
    ],
    correction="holm",
    may_stop=True,
    stop_reason="every primary metric is decided (always-valid p below alpha)",
    scale="relative",
    planned_units=18_000,
    planned_units_source="plan",
    planned_units_basis="liftstream plan for 'conversion'",
)
ABSOLUTE = SCORECARD.model_copy(
    update={
        "scale": "absolute",
        "metrics": [
            SCORECARD.metrics[0].model_copy(
                update={
                    "scale": "absolute",
                    "adjusted_effect": Interval(estimate=0.0295, ci_low=0.0181, ci_high=0.0409),
                }
            ),
            SCORECARD.metrics[1].model_copy(update={"scale": "absolute"}),
        ],
    }
)


def _day(day: int, control: int, treatment: int, p: float | None) -> DayResults:
    return DayResults(
        day=date(2026, 11, day),
        total_units=control + treatment,
        excluded_units=0,
        variants=[
            VariantDay(variant_key="control", units=control, excluded_units=0, stats=[]),
            VariantDay(variant_key="treatment", units=treatment, excluded_units=0, stats=[]),
        ],
        sample_ratio_p_value=0.8,
        metrics=[
            MetricDay(
                metric="conversion",
                variant_key="treatment",
                p_value=p,
                adjusted_p_value=p,
                sequential_p_value=None if p is None else min(1.0, p * 4),
                absolute_effect=None if p is None else 0.02,
                significant=p is not None and p < 0.05,
                reason=None if p is not None else "an arm has no units",
            )
        ],
    )


DAILY = DailyResults(
    tenant_id="acme",
    experiment_key="checkout-button",
    experiment_version=2,
    days=[_day(26, 40, 0, None), _day(27, 1_200, 1_180, 0.2), _day(28, 10_030, 9_970, 0.00002)],
)


class CannedResults(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, Any]]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, {"detail": "Not Found"}))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass
