"""The decision of one rollout check: a pure, deterministic function.

``decide(view, inputs)`` reads the plan and the rollout's state (``RolloutView``, as the
control log says it was) and what the check saw (``CheckInputs``: the arms' sufficient
statistics and the time) and returns the decision with its evidence. It reads no clock
and does no I/O, so replaying the control log (each decision event keeps its inputs)
gives the same decisions, bit for bit.

A plan with an ``entry_gate`` starts not started (``view.entered`` false, nobody served
the candidate): until the shadow test's gate, read by the controller and passed in as
``inputs.entry_gate``, allows it, each check holds ("waiting for the shadow gate", or
"gate unavailable" when the results service could not be asked: never advance on no
answer); the check it allows advances to the first step, with the gate's figures in the
evidence. Guardrails and health are not judged before the first step (nobody is in it).

Once started, the order of precedence, first match wins:

1. a guardrail (not dry-run) worse than tolerated: ``on_failure.guardrail``
   (rollback, or hold; notify goes on as if it passed, flagged);
2. a failed health gate (SRM, multiple exposure, dead letters): ``on_failure.health``;
3. no data in an arm after the grace period: ``inconclusive`` (or rollback when
   ``on_failure.no_data`` says so);
4. a signal (not dry-run) worse than tolerated: hold (a signal never rolls back);
5. a guardrail (not dry-run) without data (no units, no denominator, a negative
   control mean on a relative scale, a constant worse difference): hold, and after the
   grace period ``on_failure.no_data`` (a rollout never advances past a metric it cannot
   see; a signal without data is reported and does not hold);
6. paused by a person: hold;
7. the step's minimum duration and units per arm reached: complete on the last step,
   else advance, unless the next step needs an approval not given yet (hold);
8. otherwise hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from analytics.rollouts.guardrails import check_guardrail
from analytics.rollouts.health import check_health
from schemas.rollout import (
    CheckInputs,
    Decision,
    DecisionEvidence,
    FailureAction,
    GuardrailResult,
    MetricInput,
    RolloutPlan,
    ShadowGateInput,
)


@dataclass(frozen=True)
class RolloutView:
    """What the control log says about a rollout when a check is made."""

    plan: RolloutPlan
    step_index: int
    step_started_at: datetime
    started_at: datetime
    approved_steps: frozenset[int] = frozenset()
    paused: bool = False
    #: False while the plan's entry gate has not let the rollout start its first step.
    entered: bool = True


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    step_index: int
    percent: float
    notify: bool
    evidence: DecisionEvidence


def _guardrail_results(view: RolloutView, inputs: CheckInputs) -> list[GuardrailResult]:
    plan = view.plan
    empty = MetricInput(n=0)
    return [
        check_guardrail(
            guardrail,
            inputs.control.metrics.get(guardrail.metric, empty),
            inputs.treatment.metrics.get(guardrail.metric, empty),
            ratio=guardrail.metric in inputs.ratio_metrics,
            alpha=plan.alpha_per_test,
            planned_units=plan.planned_units,
        )
        for guardrail in plan.guardrails
    ]


def _gate_reason(gate: ShadowGateInput) -> str:
    def share(value: float | None) -> str:
        return "?" if value is None else f"{value:.3%}"

    return (
        f"shadow {gate.shadow}: mismatch beyond noise {share(gate.estimate)}, interval "
        f"[{share(gate.low)}, {share(gate.upper)}], n = {gate.candidate_runs} candidate / "
        f"{gate.secondary_runs} secondary runs; {gate.detail}"
    )


def _before_entry(view: RolloutView, inputs: CheckInputs) -> Outcome:
    """A check of a rollout whose entry gate has not yet passed."""
    plan = view.plan
    gate = inputs.entry_gate
    wanted = plan.entry_gate
    reasons: list[str] = []
    decision: Decision = "hold"
    if view.paused:
        reasons.append("paused by a person")
    elif gate is None or wanted is None or not gate.available:
        detail = "not asked" if gate is None else gate.detail
        reasons.append(f"held: gate unavailable: {detail}")
    elif (
        gate.shadow != wanted.shadow
        or gate.max_mismatch_beyond_noise != wanted.max_mismatch_beyond_noise
        or gate.confidence != wanted.confidence
    ):
        reasons.append("held: gate unavailable: the gate read is not the plan's")
    elif gate.allowed and gate.upper is not None and gate.upper < wanted.max_mismatch_beyond_noise:
        first = plan.steps[0].percent
        reasons.append(f"shadow gate passed: {_gate_reason(gate)}; on to {first:g}%")
        decision = "advance"
    else:
        reasons.append(f"held: waiting for the shadow gate: {_gate_reason(gate)}")
    evidence = DecisionEvidence(
        step_index=0,
        percent=0.0,
        step_started_at=view.step_started_at,
        seconds_on_step=max(0.0, (inputs.as_of - view.step_started_at).total_seconds()),
        units_control=inputs.control.units,
        units_treatment=inputs.treatment.units,
        guardrails=[],
        health=[],
        reasons=reasons,
        entry_gate=gate,
        inputs=inputs,
    )
    percent = plan.steps[0].percent if decision == "advance" else 0.0
    return Outcome(decision, 0, percent, False, evidence)


def decide(view: RolloutView, inputs: CheckInputs) -> Outcome:
    plan = view.plan
    if not view.entered and plan.entry_gate is not None:
        return _before_entry(view, inputs)
    step = plan.steps[view.step_index]
    on_step = max(0.0, (inputs.as_of - view.step_started_at).total_seconds())
    since_start = max(0.0, (inputs.as_of - view.started_at).total_seconds())
    guardrails = _guardrail_results(view, inputs)
    health = check_health(plan.health, inputs, since_start)
    reasons: list[str] = []
    notify = False
    decision: Decision | None = None

    def act(action: FailureAction, why: str) -> Decision | None:
        nonlocal notify
        reasons.append(f"{why} -> {action}")
        if action == "notify":
            notify = True
            return None
        return "rollback" if action == "rollback" else "hold"

    failed = [g for g in guardrails if g.verdict == "fail" and not g.dry_run]
    for result in guardrails:
        if result.verdict == "fail" and result.dry_run:
            reasons.append(f"dry run: {result.role} {result.metric} would fail: {result.reason}")
    for result in (g for g in failed if g.role == "guardrail"):
        decision = decision or act(
            plan.on_failure.guardrail, f"guardrail {result.metric}: {result.reason}"
        )
    for gate in (h for h in health if not h.ok and h.gate != "no_data"):
        decision = decision or act(plan.on_failure.health, f"health {gate.gate}: {gate.detail}")
    no_data = next(h for h in health if h.gate == "no_data")
    if decision is None and not no_data.ok:
        action = plan.on_failure.no_data
        reasons.append(f"no data: {no_data.detail} -> {action}")
        notify = notify or action == "notify"
        decision = "rollback" if action == "rollback" else "inconclusive"
    for result in (g for g in failed if g.role == "signal"):
        reasons.append(f"signal {result.metric}: {result.reason} -> hold")
        decision = decision or "hold"
    blind = [
        g for g in guardrails if g.verdict == "no_data" and g.role == "guardrail" and not g.dry_run
    ]
    if decision is None and blind:
        # A rollout never advances past a metric it cannot see ("no data" is a state).
        late = since_start >= plan.health.no_data_grace_s
        for result in blind:
            reasons.append(f"no data for guardrail {result.metric}: {result.reason}")
        if late:
            action = plan.on_failure.no_data
            reasons.append(f"no data past the grace period -> {action}")
            notify = notify or action == "notify"
            decision = "rollback" if action == "rollback" else "inconclusive"
        else:
            decision = "hold"
    if decision is None and view.paused:
        reasons.append("paused by a person")
        decision = "hold"
    if decision is None:
        decision = _progress(view, inputs, on_step, reasons)
    step_index, percent = view.step_index, step.percent
    if decision == "advance":
        step_index += 1
        percent = plan.steps[step_index].percent
    elif decision == "rollback":
        percent = 0.0
    elif decision == "complete" and plan.target.is_flag:
        percent = 100.0  # a completed flag rollout serves on to the whole segment
    evidence = DecisionEvidence(
        step_index=view.step_index,
        percent=step.percent,
        step_started_at=view.step_started_at,
        seconds_on_step=on_step,
        units_control=inputs.control.units,
        units_treatment=inputs.treatment.units,
        guardrails=guardrails,
        health=health,
        reasons=reasons,
        inputs=inputs,
    )
    return Outcome(decision, step_index, percent, notify, evidence)


def _progress(
    view: RolloutView, inputs: CheckInputs, on_step: float, reasons: list[str]
) -> Decision:
    plan = view.plan
    step = plan.steps[view.step_index]
    waiting = []
    if on_step < step.min_duration_s:
        waiting.append(f"{on_step:.0f} of {step.min_duration_s:g} s on step {view.step_index + 1}")
    fewest = min(inputs.control.units, inputs.treatment.units)
    if fewest < step.min_units_per_arm:
        waiting.append(f"{fewest} of {step.min_units_per_arm} units in the smaller arm")
    if waiting:
        reasons.append("waiting: " + "; ".join(waiting))
        return "hold"
    last = view.step_index == len(plan.steps) - 1
    if last:
        reasons.append(f"the last step ({step.percent:g}%) held every guardrail")
        return "complete"
    following = view.step_index + 1
    if plan.steps[following].approval and following not in view.approved_steps:
        reasons.append(
            f"step {following + 1} ({plan.steps[following].percent:g}%) needs an approval"
        )
        return "hold"
    reasons.append(
        f"step {view.step_index + 1} ({step.percent:g}%) held every guardrail: on to "
        f"{plan.steps[following].percent:g}%"
    )
    return "advance"
