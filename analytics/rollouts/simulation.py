"""Seeded simulated rollouts: how often guardrails roll back, with and without a real
regression.

Each simulated rollout makes ``checks`` checks; between checks each arm gains
``units_per_check`` units whose guardrail metrics are conversions (0/1 per unit: an
error, a slow request, a purchase) drawn at the control's rate, times ``1 + effect`` in
the candidate arm. Every check runs each guardrail through the same test as the
controller (``guardrails.worse_than_tolerated`` on the relative effect of
``arm_mean``'s figures), vectorised over rollouts and checks; a rollout counts as rolled
back at its first check where a guardrail fails. ``check_through_decide`` replays one
simulated rollout through ``decide`` itself (tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from analytics.rollouts.decide import RolloutView, decide
from analytics.rollouts.guardrails import worse_than_tolerated
from analytics.stats.comparison import relative_effect
from schemas.rollout import ArmInput, CheckInputs, MetricInput, RolloutPlan

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedData:
    names: list[str]
    units_per_check: int
    #: Cumulative converting units, shape (rollouts, checks, metrics), per arm.
    control: npt.NDArray[np.int64]
    treatment: npt.NDArray[np.int64]


@dataclass(frozen=True)
class SimulationSummary:
    rollouts: int
    rolled_back: int
    #: Check index (0-based) of each rollout's first rollback; -1 where none.
    first_rollback: list[int]

    @property
    def rollback_rate(self) -> float:
        return self.rolled_back / self.rollouts


def simulate_data(
    control_rates: dict[str, float],
    effects: dict[str, float],
    *,
    units_per_check: int,
    checks: int,
    rollouts: int,
    seed: int,
) -> SimulatedData:
    generator = np.random.default_rng(seed)
    names = sorted(control_rates)
    rate_c = np.array([control_rates[name] for name in names])
    rate_t = rate_c * (1.0 + np.array([effects.get(name, 0.0) for name in names]))
    shape = (rollouts, checks, len(names))
    new_c = generator.binomial(units_per_check, rate_c, size=shape)
    new_t = generator.binomial(units_per_check, rate_t, size=shape)
    return SimulatedData(names, units_per_check, new_c.cumsum(axis=1), new_t.cumsum(axis=1))


def _conversion_mean(converted: npt.NDArray[np.int64], units: npt.NDArray[np.float64]):  # type: ignore[no-untyped-def]
    """Mean and variance of the mean of 0/1 values (``arm_mean`` with Σx = Σx²)."""
    mean = converted / units
    variance = (converted - units * mean**2) / (units - 1) / units
    return mean, np.maximum(variance, 0.0)


def first_rollbacks(plan: RolloutPlan, data: SimulatedData) -> SimulationSummary:
    checks = data.control.shape[1]
    units = (np.arange(1, checks + 1, dtype=np.float64) * data.units_per_check)[None, :]
    failed_any = np.zeros(data.control.shape[:2], dtype=bool)
    by_metric = {guardrail.metric: guardrail for guardrail in plan.guardrails}
    for index, name in enumerate(data.names):
        guardrail = by_metric.get(name)
        if guardrail is None or guardrail.dry_run or guardrail.role != "guardrail":
            continue
        mean_c, var_c = _conversion_mean(data.control[..., index], units)
        mean_t, var_t = _conversion_mean(data.treatment[..., index], units)
        relative, se = relative_effect(mean_c, mean_t, var_c, var_t)
        worse_sign = 1.0 if guardrail.direction == "decrease" else -1.0
        _, _, _, failed = worse_than_tolerated(
            relative,
            se**2,
            np.broadcast_to(2 * units, relative.shape),
            threshold=worse_sign * guardrail.tolerance,
            worse_sign=worse_sign,
            alpha=plan.alpha_per_test,
            planned_units=plan.planned_units,
        )
        failed_any |= failed
    first = np.where(failed_any.any(axis=1), failed_any.argmax(axis=1), -1)
    return SimulationSummary(
        rollouts=len(first), rolled_back=int((first >= 0).sum()), first_rollback=first.tolist()
    )


def check_through_decide(plan: RolloutPlan, data: SimulatedData, rollout: int) -> int:
    """The first check of ``rollout`` at which ``decide`` rolls back; -1 if none."""
    interval = timedelta(seconds=plan.check_interval_s)
    view = RolloutView(plan=plan, step_index=0, step_started_at=_EPOCH, started_at=_EPOCH)
    for check in range(data.control.shape[1]):
        units = data.units_per_check * (check + 1)
        arms = [
            ArmInput(
                units=units,
                metrics={
                    name: MetricInput(n=units, sum_x=float(total), sum_xx=float(total))
                    for name, total in zip(data.names, sums[rollout, check].tolist(), strict=True)
                },
            )
            for sums in (data.control, data.treatment)
        ]
        inputs = CheckInputs(
            as_of=_EPOCH + interval * (check + 1), control=arms[0], treatment=arms[1]
        )
        if decide(view, inputs).decision == "rollback":
            return check
    return -1
