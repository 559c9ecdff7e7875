"""A rollout plan replayed against a past experiment's log: what it would have decided.

``simulate_days(plan, experiment, days)`` takes the experiment's daily cumulative figures
(``schemas.results.DailyResults``, recomputed from the raw log by the results service) and
makes one check at the end of each day, through the same ``decide`` as the controller:
the view starts on the plan's first step at the first day's start and moves on as the
decisions advance; it stops at the first rollback or completion. A past experiment ran at
its own traffic, so the steps' percents are notional here: what is replayed is when each
step's conditions (duration, units, guardrails, health) would have been met. Approval
gates are taken as given (a simulation has nobody to ask), and said so in the reasons;
so is a plan's shadow entry gate (the view starts entered: the log has no shadow test).
Guardrails on metrics the daily figures do not carry (mean and ratio metrics, windows,
caps) have no data. A flag plan is replayed against an experiment that tested the same
change: the experiment's control stands for ``off``, ``candidate`` (one of its
treatments) for ``on``, and the guardrails are the experiment's metrics of those names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from analytics.rollouts.decide import Outcome, RolloutView, decide
from schemas.experiment import Experiment
from schemas.rollout import ArmInput, CheckInputs, MetricInput, RolloutPlan


@dataclass(frozen=True)
class SimulatedCheck:
    day: date
    outcome: Outcome


def _arm(variant: dict[str, Any] | None, plan: RolloutPlan, experiment: Experiment) -> ArmInput:
    if variant is None:
        return ArmInput()
    stats = {(s["event"], s["aggregation"]): s for s in variant["stats"]}
    definitions = {metric.name: metric for metric in experiment.metrics}
    metrics: dict[str, MetricInput] = {}
    for guardrail in plan.guardrails:
        metric = definitions.get(guardrail.metric)
        if metric is None or metric.needs_replay:
            continue
        cell = stats.get((metric.event, metric.type.value))
        metrics[guardrail.metric] = MetricInput(
            n=variant["units"],
            sum_x=0.0 if cell is None else cell["sum"],
            sum_xx=0.0 if cell is None else cell["sum_sq"],
        )
    return ArmInput(
        units=variant["units"], excluded_units=variant["excluded_units"], metrics=metrics
    )


def simulate_days(
    plan: RolloutPlan,
    experiment: Experiment,
    days: list[dict[str, Any]],
    candidate: str | None = None,
) -> list[SimulatedCheck]:
    """``candidate``: the experiment's variant replayed as the plan's candidate (default:
    the plan's variant; a flag plan's is the experiment's only treatment)."""
    if candidate is None:
        if plan.target.is_flag:
            if len(experiment.treatment_keys) != 1:
                raise ValueError(
                    f"'{experiment.key}' has treatments {', '.join(experiment.treatment_keys)}:"
                    " say which one stands for the flag's on value"
                )
            candidate = experiment.treatment_keys[0]
        else:
            candidate = plan.target.candidate
    if not days:
        return []
    start = datetime.combine(date.fromisoformat(str(days[0]["day"])), time(), tzinfo=UTC)
    view = RolloutView(
        plan=plan,
        step_index=0,
        step_started_at=start,
        started_at=start,
        approved_steps=frozenset(range(len(plan.steps))),
        entered=True,  # the entry gate, like approvals, taken as given
    )
    weights = experiment.variant_weights()
    checks: list[SimulatedCheck] = []
    for day in days:
        today = date.fromisoformat(str(day["day"]))
        as_of = datetime.combine(today, time(), tzinfo=UTC) + timedelta(days=1)
        variants = {v["variant_key"]: v for v in day["variants"]}
        inputs = CheckInputs(
            as_of=as_of,
            control=_arm(variants.get(experiment.control_key), plan, experiment),
            treatment=_arm(variants.get(candidate), plan, experiment),
            control_weight=weights[experiment.control_key],
            treatment_weight=weights[candidate],
        )
        outcome = decide(view, inputs)
        checks.append(SimulatedCheck(today, outcome))
        if outcome.decision == "advance":
            view = replace(view, step_index=outcome.step_index, step_started_at=as_of)
        if outcome.decision in ("rollback", "complete"):
            break
    return checks
