"""Rollout commands -> control events, checked against the projection (pure, no I/O).

``define_rollout`` applies a plan: its target must be an experiment of the tenant that is
not concluded, its variant one of the experiment's treatments, each guardrail metric one
of the experiment's metrics; or a flag of the tenant that is not on outside a rollout
(the first step would turn units off; a flag served before, killed or rolled back, is
fine: each rollout's arms are its own exposure key), each guardrail one of the tenant's
metrics the stream can keep live (any but a percentile cap); and no other active rollout
may drive the same target.
Re-applying the same plan changes nothing; a different plan needs the next version.
``command_rollout`` records a person's approve, pause, resume or abort. Refusals name the
field (``Refused``, as ``services.control.commands``).
"""

from __future__ import annotations

from typing import Literal

from schemas.control import RolloutCommanded, RolloutDefined
from schemas.limits import MAX_ACTIVE_ROLLOUTS_PER_TENANT, MAX_DEFINITIONS_PER_TENANT
from schemas.rollout import RolloutPlan
from services.control.lookups import Author, refuse, rollout_entry, tenant_of
from services.control_domain.control_state import ControlState, TenantState

RolloutAction = Literal["approve", "pause", "resume", "abort"]
_EVENT = {
    "approve": "rollout_approved",
    "pause": "rollout_paused",
    "resume": "rollout_resumed",
    "abort": "rollout_aborted",
}


def _check_experiment_target(tenant: TenantState, plan: RolloutPlan, subject: str) -> None:
    target = tenant.experiments.get(plan.target.key)
    if target is None:
        raise refuse(
            422,
            subject,
            "target.experiment",
            f"no experiment '{plan.target.key}'; create it first (liftstream apply)",
        )
    experiment = target.experiment
    if experiment.status == "concluded":
        raise refuse(409, subject, "target.experiment", "the experiment is concluded")
    if plan.target.candidate not in experiment.treatment_keys:
        raise refuse(
            422,
            subject,
            "target.variant",
            f"'{plan.target.candidate}' is not a treatment of '{experiment.key}' (treatments: "
            f"{', '.join(experiment.treatment_keys)}; the control is '{experiment.control_key}')",
        )
    metrics = {metric.name for metric in experiment.metrics}
    for index, guardrail in enumerate(plan.guardrails):
        if guardrail.metric not in metrics:
            raise refuse(
                422,
                subject,
                f"guardrails.{index}.metric",
                f"'{guardrail.metric}' is not a metric of '{experiment.key}' "
                f"({', '.join(sorted(metrics))})",
            )


def _check_flag_target(tenant: TenantState, plan: RolloutPlan, subject: str) -> None:
    entry = tenant.flags.get(plan.target.key)
    if entry is None:
        raise refuse(
            422,
            subject,
            "target.flag",
            f"no flag '{plan.target.key}'; create it first (liftstream flag apply)",
        )
    flag = entry.flag
    if flag.ramp > 0 and flag.holdback == 0 and not entry.killed:
        # The arms are the rollout's own (its exposure key), but its first step would
        # silently turn the flag off for units served on now: that is a person's decision.
        raise refuse(
            409,
            subject,
            "target.flag",
            f"the flag is on for {flag.ramp:g}% of its units outside any rollout; the "
            f"rollout's first step ({plan.steps[0].percent:g}%) would turn it off for most "
            "of them: ramp it to 0 (or kill it) first",
        )
    for index, guardrail in enumerate(plan.guardrails):
        metric = tenant.metrics.get(guardrail.metric)
        if metric is None:
            raise refuse(
                422,
                subject,
                f"guardrails.{index}.metric",
                f"'{guardrail.metric}' is not one of the tenant's metrics "
                f"({', '.join(sorted(tenant.metrics)) or 'none'}); a flag's guardrails are "
                "the tenant's metrics (liftstream metric apply)",
            )
        if metric.metric.needs_replay and not metric.metric.kept_live:
            raise refuse(
                422,
                subject,
                f"guardrails.{index}.metric",
                f"'{guardrail.metric}' has a percentile cap, which the stream cannot keep "
                "live: a flag's guardrails are metrics the stream keeps as it goes",
            )


def define_rollout(
    state: ControlState, author: Author, plan: RolloutPlan, reason: str
) -> RolloutDefined | None:
    subject = "cannot apply the rollout plan"
    tenant = tenant_of(state, author.tenant_id)
    field = "target.flag" if plan.target.is_flag else "target.experiment"
    if plan.target.is_flag:
        _check_flag_target(tenant, plan, subject)
    else:
        _check_experiment_target(tenant, plan, subject)
    for key, other in sorted(tenant.rollouts.items()):
        if (
            key != plan.key
            and other.active
            and (other.plan.target.is_flag, other.plan.target.key)
            == (plan.target.is_flag, plan.target.key)
        ):
            raise refuse(409, subject, field, f"rollout '{key}' already drives '{plan.target.key}'")
    current = tenant.rollouts.get(plan.key)
    active = sum(1 for key, other in tenant.rollouts.items() if other.active and key != plan.key)
    if active >= MAX_ACTIVE_ROLLOUTS_PER_TENANT:
        raise refuse(
            409,
            "limit reached",
            "rollouts",
            f"the tenant has {active} active rollouts; the limit is "
            f"{MAX_ACTIVE_ROLLOUTS_PER_TENANT} (complete, roll back or abort one first)",
        )
    if current is None:
        if len(tenant.rollouts) >= MAX_DEFINITIONS_PER_TENANT:
            raise refuse(
                409,
                "limit reached",
                "rollouts",
                f"the tenant has {len(tenant.rollouts)} rollouts; the limit is "
                f"{MAX_DEFINITIONS_PER_TENANT}",
            )
    elif plan == current.plan and current.active:
        return None
    elif plan.version != current.plan.version + 1:
        raise refuse(
            409,
            subject,
            "version",
            f"is {plan.version}; a change to rollout '{plan.key}' (version "
            f"{current.plan.version}) needs version {current.plan.version + 1}",
        )
    return RolloutDefined(
        tenant_id=author.tenant_id, author=author.key_id, reason=reason, plan=plan
    )


def command_rollout(
    state: ControlState,
    author: Author,
    key: str,
    action: RolloutAction,
    reason: str,
    step: int | None = None,
) -> RolloutCommanded | None:
    """``step`` (approve): the step number (1-based) approved; the next step if None."""
    entry = rollout_entry(state, author.tenant_id, key)
    subject = f"cannot {action} the rollout"
    if not entry.active:
        raise refuse(409, subject, "status", f"the rollout is {entry.status.replace('_', ' ')}")
    step_index: int | None = None
    if action == "approve":
        step_index = entry.step_index + 1 if step is None else step - 1
        steps = entry.plan.steps
        if not 0 <= step_index < len(steps) or step_index <= entry.step_index:
            raise refuse(
                422,
                subject,
                "step",
                f"step {step_index + 1} is not ahead of the rollout (on step "
                f"{entry.step_index + 1} of {len(steps)})",
            )
        if not steps[step_index].approval:
            raise refuse(422, subject, "step", f"step {step_index + 1} has no approval gate")
        if step_index in entry.approved_steps:
            return None
    elif (action, entry.status) in {("pause", "paused"), ("resume", "running")}:
        return None
    return RolloutCommanded(
        type=_EVENT[action],  # type: ignore[arg-type]
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        key=key,
        plan_version=entry.plan.version,
        step_index=step_index,
    )
