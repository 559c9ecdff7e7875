"""The rollout decision: each rule of precedence, the evidence, and determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from analytics.rollouts.decide import RolloutView, decide
from analytics.rollouts.guardrails import check_guardrail
from schemas.rollout import ArmInput, CheckInputs, Guardrail, MetricInput, RolloutPlan

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def plan(**changes: Any) -> RolloutPlan:
    document: dict[str, Any] = {
        "key": "new-checkout",
        "target": {"experiment": "checkout", "variant": "candidate"},
        "steps": [
            {"percent": 1, "min_duration_s": 60, "min_units_per_arm": 100},
            {"percent": 5, "min_duration_s": 60, "min_units_per_arm": 100},
            {"percent": 25, "min_units_per_arm": 100},
        ],
        "guardrails": [
            {"metric": "errors", "direction": "decrease", "tolerance": 0.0},
            {"metric": "purchase", "direction": "increase", "tolerance": 0.02, "role": "signal"},
        ],
        "health": {"no_data_grace_s": 300},
    }
    document.update(changes)
    return RolloutPlan.model_validate(document)


def arm(units: int, errors: int, purchases: int, excluded: int = 0) -> ArmInput:
    return ArmInput(
        units=units,
        excluded_units=excluded,
        metrics={
            "errors": MetricInput(n=units, sum_x=errors, sum_xx=errors),
            "purchase": MetricInput(n=units, sum_x=purchases, sum_xx=purchases),
        },
    )


def inputs(control: ArmInput, treatment: ArmInput, seconds: float = 120) -> CheckInputs:
    return CheckInputs(
        as_of=START + timedelta(seconds=seconds), control=control, treatment=treatment
    )


def view(the_plan: RolloutPlan | None = None, **changes: Any) -> RolloutView:
    fields: dict[str, Any] = {
        "plan": the_plan or plan(),
        "step_index": 0,
        "step_started_at": START,
        "started_at": START,
    }
    fields.update(changes)
    return RolloutView(**fields)


HEALTHY = (arm(2000, 100, 200), arm(2000, 101, 199))


def test_a_healthy_step_that_met_its_minimums_advances_to_the_next_percent() -> None:
    outcome = decide(view(), inputs(*HEALTHY))
    assert outcome.decision == "advance"
    assert (outcome.step_index, outcome.percent) == (1, 5)
    assert [g.verdict for g in outcome.evidence.guardrails] == ["pass", "pass"]
    assert all(h.ok for h in outcome.evidence.health)
    assert outcome.evidence.units_control == 2000


def test_a_step_holds_until_its_minimum_duration_and_units() -> None:
    early = decide(view(), inputs(*HEALTHY, seconds=30))
    assert early.decision == "hold"
    assert "30 of 60 s" in early.evidence.reasons[0]
    few = decide(view(), inputs(arm(50, 2, 5), arm(55, 3, 5), seconds=120))
    assert few.decision == "hold"
    assert "50 of 100 units" in few.evidence.reasons[0]


def test_an_approval_gate_holds_until_a_person_approves_the_next_step() -> None:
    gated = view(plan(steps=[{"percent": 1}, {"percent": 5, "approval": True}]), step_index=0)
    held = decide(gated, inputs(*HEALTHY))
    assert held.decision == "hold"
    assert "needs an approval" in held.evidence.reasons[-1]
    approved = RolloutView(**{**gated.__dict__, "approved_steps": frozenset({1})})
    assert decide(approved, inputs(*HEALTHY)).decision == "advance"


def test_the_last_step_completes() -> None:
    outcome = decide(view(step_index=2), inputs(*HEALTHY))
    assert outcome.decision == "complete"
    assert outcome.percent == 25


def test_a_guardrail_worse_than_tolerated_rolls_back_with_its_evidence() -> None:
    outcome = decide(view(), inputs(arm(5000, 250, 500), arm(5000, 400, 500)))
    assert outcome.decision == "rollback"
    assert outcome.percent == 0
    errors = outcome.evidence.guardrails[0]
    assert errors.verdict == "fail"
    assert errors.effect == pytest.approx(400 / 250 - 1)
    assert errors.interval is not None and errors.interval[0] > 0
    assert errors.p_value is not None and errors.p_value <= errors.alpha == 0.025
    assert "guardrail errors" in outcome.evidence.reasons[0]


def test_on_failure_hold_and_notify_instead_of_rollback() -> None:
    bad = inputs(arm(5000, 250, 500), arm(5000, 400, 500))
    held = decide(view(plan(on_failure={"guardrail": "hold"})), bad)
    assert held.decision == "hold" and not held.notify
    notified = decide(view(plan(on_failure={"guardrail": "notify"})), bad)
    assert notified.notify
    assert notified.decision == "advance"


def test_a_dry_run_guardrail_is_reported_but_never_acts() -> None:
    dry = plan(guardrails=[{"metric": "errors", "direction": "decrease", "dry_run": True}])
    outcome = decide(view(dry), inputs(arm(5000, 250, 500), arm(5000, 400, 500)))
    assert outcome.decision == "advance"
    assert outcome.evidence.guardrails[0].verdict == "fail"
    assert outcome.evidence.reasons[0].startswith("dry run: guardrail errors would fail")


def test_a_signal_can_only_hold() -> None:
    outcome = decide(view(), inputs(arm(5000, 250, 1000), arm(5000, 250, 600)))
    assert outcome.decision == "hold"
    assert outcome.evidence.guardrails[1].verdict == "fail"
    assert "signal purchase" in outcome.evidence.reasons[0]


def test_sample_ratio_mismatch_holds_by_default() -> None:
    outcome = decide(view(), inputs(arm(2000, 100, 200), arm(1500, 75, 150)))
    srm = outcome.evidence.health[0]
    assert srm.gate == "srm" and not srm.ok and srm.value is not None and srm.value < 0.001
    assert outcome.decision == "hold"


def test_multiple_exposures_above_the_limit_fail_the_health_gate() -> None:
    outcome = decide(
        view(plan(on_failure={"health": "rollback"})),
        inputs(arm(2000, 100, 200, excluded=40), arm(2000, 100, 200, excluded=40)),
    )
    gate = outcome.evidence.health[1]
    assert gate.gate == "multiple_exposure" and not gate.ok
    assert outcome.decision == "rollback"


def test_no_data_after_the_grace_period_is_inconclusive_not_a_pass() -> None:
    empty = ArmInput()
    assert decide(view(), inputs(empty, empty, seconds=100)).decision == "hold"
    late = decide(view(), inputs(empty, empty, seconds=400))
    assert late.decision == "inconclusive"
    assert not late.evidence.health[2].ok
    rollback = decide(view(plan(on_failure={"no_data": "rollback"})), inputs(empty, empty, 400))
    assert rollback.decision == "rollback"


def test_a_paused_rollout_holds_but_still_rolls_back_a_bad_candidate() -> None:
    assert decide(view(paused=True), inputs(*HEALTHY)).decision == "hold"
    bad = inputs(arm(5000, 250, 500), arm(5000, 400, 500))
    assert decide(view(paused=True), bad).decision == "rollback"


def test_the_same_inputs_give_the_same_decision_bit_for_bit() -> None:
    first = decide(view(), inputs(arm(5000, 250, 500), arm(5000, 290, 480)))
    again = decide(view(), inputs(arm(5000, 250, 500), arm(5000, 290, 480)))
    assert first.evidence.model_dump_json() == again.evidence.model_dump_json()
    assert first.decision == again.decision


def test_the_guardrail_test_matches_the_closed_form() -> None:
    """Relative effect by the delta method; mSPRT p-value and interval by hand."""
    n, x_c, x_t, alpha, planned = 4000, 200, 260, 0.025, 10_000
    result = check_guardrail(
        Guardrail(metric="errors", direction="decrease", tolerance=0.05),
        MetricInput(n=n, sum_x=x_c, sum_xx=x_c),
        MetricInput(n=n, sum_x=x_t, sum_xx=x_t),
        ratio=False,
        alpha=alpha,
        planned_units=planned,
    )
    p_c, p_t = x_c / n, x_t / n
    var_c = (x_c - n * p_c**2) / (n - 1) / n
    var_t = (x_t - n * p_t**2) / (n - 1) / n
    rel = p_t / p_c - 1
    var = var_t / p_c**2 + p_t**2 * var_c / p_c**4
    factor = -2 * np.log(alpha) + np.log(1 - 2 * np.log(alpha))
    tau2 = var * 2 * n / planned * factor
    log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * (rel - 0.05) ** 2 / (2 * var * (var + tau2))
    half = np.sqrt(var * (var + tau2) / tau2 * (np.log((var + tau2) / var) - 2 * np.log(alpha)))
    assert result.effect == pytest.approx(rel, rel=1e-12)
    assert result.p_value == pytest.approx(min(1.0, np.exp(-log_lr)), rel=1e-9)
    assert result.interval == pytest.approx((rel - half, rel + half), rel=1e-9)
    assert result.threshold == 0.05
    assert result.verdict == ("fail" if rel - half > 0.05 else "pass")


def test_a_ratio_guardrail_uses_the_delta_method_for_the_ratio_of_means() -> None:
    stats = MetricInput(n=3, sum_x=6.0, sum_xx=14.0, sum_y=3.0, sum_yy=5.0, sum_xy=8.0)
    result = check_guardrail(
        Guardrail(metric="latency", direction="decrease"),
        stats,
        stats,
        ratio=True,
        alpha=0.05,
        planned_units=100,
    )
    assert result.control_mean == pytest.approx(2.0)
    assert result.effect == pytest.approx(0.0)
    assert result.verdict == "pass"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": [{"percent": 5}, {"percent": 5}]}, "steps.1.percent"),
        ({"steps": [{"percent": 101}]}, "steps.0.percent"),
        ({"steps": [{"percent": 1}] * 21}, "steps"),
        ({"check_interval_s": 0.1}, "check_interval_s"),
        ({"alpha": float("nan")}, "alpha"),
        ({"guardrails": [{"metric": "errors", "direction": "up"}]}, "guardrails.0.direction"),
        ({"webhooks": [{"url": "file:///etc/passwd"}]}, "webhooks.0.url"),
        ({"webhooks": [{"url": "http://h/" + "a" * 3000}]}, "webhooks.0.url"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_plan_beyond_its_bounds_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        plan(**change)
    located = [".".join(str(p) for p in error["loc"]) for error in caught.value.errors()]
    messages = " ".join(str(error["msg"]) for error in caught.value.errors())
    assert any(loc.startswith(field) for loc in located) or field in messages


def test_a_guardrail_better_than_its_threshold_has_no_evidence_against_it() -> None:
    result = check_guardrail(
        Guardrail(metric="errors", direction="decrease", tolerance=0.05),
        MetricInput(n=4000, sum_x=400, sum_xx=400),
        MetricInput(n=4000, sum_x=200, sum_xx=200),
        ratio=False,
        alpha=0.025,
        planned_units=10_000,
    )
    assert result.effect == pytest.approx(-0.5)
    assert (result.p_value, result.verdict) == (1.0, "pass")


def test_errors_brought_to_a_service_that_had_none_roll_back() -> None:
    # A relative effect of a zero control mean is undefined; the regression is still one.
    outcome = decide(view(), inputs(arm(3000, 0, 300), arm(3000, 60, 300)))
    assert outcome.decision == "rollback"
    errors = outcome.evidence.guardrails[0]
    assert errors.verdict == "fail"
    assert (errors.scale, errors.threshold) == ("absolute", 0.0)
    assert errors.effect == pytest.approx(60 / 3000)
    assert "control mean is 0" in errors.reason


def test_no_errors_in_either_arm_is_no_sign_of_a_regression() -> None:
    outcome = decide(view(), inputs(arm(2000, 0, 200), arm(2000, 0, 199)))
    assert outcome.decision == "advance"
    assert outcome.evidence.guardrails[0].verdict == "pass"


def test_a_guardrail_without_data_holds_and_is_inconclusive_after_the_grace_period() -> None:
    def without_errors(units: int) -> ArmInput:
        return ArmInput(
            units=units,
            excluded_units=0,
            metrics={"purchase": MetricInput(n=units, sum_x=units // 10, sum_xx=units // 10)},
        )

    blind = inputs(without_errors(2000), without_errors(2000))
    held = decide(view(), blind)
    assert held.decision == "hold"
    assert any("no data for guardrail errors" in reason for reason in held.evidence.reasons)
    late_inputs = inputs(without_errors(2000), without_errors(2000), seconds=301)
    assert decide(view(), late_inputs).decision == "inconclusive"
    rolled = decide(view(plan(on_failure={"no_data": "rollback"})), late_inputs)
    assert rolled.decision == "rollback"
