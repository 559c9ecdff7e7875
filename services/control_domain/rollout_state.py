"""The projection of rollout events: each rollout's plan, step, status and decision trail.

``rollout_change`` folds one rollout event into a tenant's state, as the rest of the
control projection does (pure, lenient, computed before anything changes). A rollout
drives its target experiment in the same projection, so one event is one atomic change:

- ``rollout_defined`` (a plan applied): the experiment serves the plan's current step
  (``traffic``), to the plan's segment (``targeting``), and runs; a plan with an
  ``entry_gate`` starts not entered: the experiment is killed (everyone served the
  control) until the controller's first ``advance`` (the gate passed) enters step 1;
- ``rollout_decided`` ``advance``: the next step's percent; ``rollback``: the experiment's
  kill switch, so every SDK serves the control again; ``complete``: the rollout ends at
  its last step;
- ``rollout_aborted`` (a person): the kill switch too; ``paused``/``resumed``/``approved``
  change only the rollout.

A flag target is driven the same way: the step's percent is the flag's ``ramp`` and its
``holdback`` (as many units served off and logged, the concurrent control), the segment
its ``targeting``; rollback and abort set its kill switch (off for everyone); ``complete``
serves it on to the whole segment (ramp 100, no holdback).

While a rollout of a flag is active, the flag's snapshot carries that rollout's exposure
key (``active_flag_exposure_keys``; ``schemas.flags.rollout_exposure_key`` of the rollout
and its plan version): its arms are its own units, never an earlier rollout's.

A decision for another plan version, or a check index already decided, changes nothing:
a controller that writes a decision twice (same id, after a restart) is harmless. Nor does
a decision read too early (``read_too_early``): one whose check read the log before a
change of its rollout that the log holds before the decision (an approval or a pause
written while the check ran). It was decided on a view the log no longer gives at its
offset, so the controller makes that check again; every decision applied is thus a
function of the log before it (what ``services.controller.replay`` checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from schemas.control import RolloutCommanded, RolloutDecided, RolloutDefined, RolloutEvent
from schemas.experiment import Experiment
from schemas.flags import MAX_HOLDBACK, Flag, rollout_exposure_key
from schemas.rollout import RolloutPlan, RolloutStatus

if TYPE_CHECKING:
    from services.control_domain.control_state import HistoryEntry, TenantState

#: Decisions kept per rollout in memory (the newest; the topic keeps them all).
MAX_DECISIONS_KEPT = 2000
TERMINAL: frozenset[str] = frozenset({"rolled_back", "completed", "aborted"})


@dataclass
class RolloutEntry:
    plan: RolloutPlan
    started_at: datetime
    step_started_at: datetime
    status: RolloutStatus = "running"
    step_index: int = 0
    approved_steps: set[int] = field(default_factory=set)
    #: The next check index of the current plan version (checks already decided).
    checks: int = 0
    versions: dict[int, RolloutPlan] = field(default_factory=dict)
    #: (offset, decision) of the newest decisions, oldest first.
    decisions: list[tuple[int, RolloutDecided]] = field(default_factory=list)
    #: Definitions and people's commands, oldest first: (offset, event).
    changes: list[tuple[int, RolloutDefined | RolloutCommanded]] = field(default_factory=list)
    automatic_rollbacks: int = 0
    #: False while the plan's entry gate has not let the rollout start its first step.
    entered: bool = True

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL

    @property
    def percent(self) -> float:
        if self.status in ("rolled_back", "aborted") or not self.entered:
            return 0.0
        if self.status == "completed" and self.plan.target.is_flag:
            return 100.0  # a completed flag rollout serves on to the whole segment
        return self.plan.steps[self.step_index].percent


def active_flag_exposure_keys(rollouts: dict[str, RolloutEntry]) -> dict[str, str]:
    """flag key -> the exposure key of the active rollout that drives it (one at most:
    ``define_rollout`` refuses a second)."""
    keys: dict[str, str] = {}
    for key, entry in sorted(rollouts.items()):
        target = entry.plan.target
        if entry.active and target.is_flag:
            keys.setdefault(target.key, rollout_exposure_key(target.key, key, entry.plan.version))
    return keys


def rollout_change(tenant: TenantState, offset: int, event: RolloutEvent) -> Callable[[], None]:
    if isinstance(event, RolloutDefined):
        return _defined(tenant, offset, event)
    if isinstance(event, RolloutCommanded):
        return _commanded(tenant, offset, event)
    return _decided(tenant, offset, event)


def _serve(
    tenant: TenantState,
    offset: int,
    event: RolloutEvent,
    plan: RolloutPlan,
    *,
    traffic: float | None = None,
    killed: bool | None = None,
    define: bool = False,
) -> Callable[[], None]:
    """The change to the target experiment or flag (nothing if it does not exist)."""
    from services.control_domain.control_state import (
        ExperimentEntry,
        FieldChange,
        FlagEntry,
        _dump,
        _history_entry,
        config_diff,
    )

    entry: ExperimentEntry | FlagEntry | None
    if plan.target.is_flag:
        entry = tenant.flags.get(plan.target.key)
        if entry is None:
            return lambda: None
        before: Experiment | Flag = entry.flag
        update: dict[str, object] = {}
        if traffic is not None and traffic > 0:
            # Completing serves on to the whole segment; every step holds back as many.
            update["ramp"] = traffic
            update["holdback"] = traffic if traffic <= MAX_HOLDBACK else 0.0
        if define:
            update["targeting"] = plan.target.segment
    else:
        entry = tenant.experiments.get(plan.target.key)
        if entry is None:
            return lambda: None
        before = entry.experiment
        update = {}
        if traffic is not None and traffic > 0:
            update["traffic"] = traffic
        if define:
            update["targeting"] = plan.target.segment
            if entry.experiment.status in ("draft", "paused"):
                update["status"] = "running"
    after = before.model_copy(update=update) if update else before
    diff = config_diff(_dump(before), _dump(after))
    if killed is not None and killed != entry.killed:
        diff.append(FieldChange(field="killed", before=entry.killed, after=killed))
    if not diff:
        return lambda: None
    record: HistoryEntry = _history_entry(offset, event, before.key, after.version, diff)
    target = entry

    def commit() -> None:
        if isinstance(target, FlagEntry):
            assert isinstance(after, Flag)
            target.flag = after
            target.versions[after.version] = after
        else:
            assert isinstance(after, Experiment)
            target.experiment = after
            target.versions[after.version] = after
        if killed is not None:
            target.killed = killed
        tenant.revision = offset
        tenant.record(record)

    return commit


def _defined(tenant: TenantState, offset: int, event: RolloutDefined) -> Callable[[], None]:
    plan = event.plan
    current = tenant.rollouts.get(plan.key)
    at = event.occurred_at
    restart = current is None or not current.active
    step = 0 if restart or current is None else min(current.step_index, len(plan.steps) - 1)
    # A new version of a rollout already past its gate stays past it.
    entered = plan.entry_gate is None or (not restart and current is not None and current.entered)
    serve = _serve(
        tenant,
        offset,
        event,
        plan,
        traffic=plan.steps[step].percent,
        killed=not entered,
        define=True,
    )

    def commit() -> None:
        entry = tenant.rollouts.get(plan.key)
        if entry is None or restart:
            previous = entry
            entry = RolloutEntry(plan=plan, started_at=at, step_started_at=at, entered=entered)
            if previous is not None:
                entry.versions = previous.versions
                entry.decisions = previous.decisions
                entry.changes = previous.changes
                entry.automatic_rollbacks = previous.automatic_rollbacks
            tenant.rollouts[plan.key] = entry
        else:
            if step != entry.step_index:
                entry.step_started_at = at
            entry.plan = plan
            entry.step_index = step
            entry.checks = 0
            entry.started_at = at
            entry.entered = entered
        entry.versions[plan.version] = plan
        entry.changes.append((offset, event))
        serve()

    return commit


def _commanded(tenant: TenantState, offset: int, event: RolloutCommanded) -> Callable[[], None]:
    entry = tenant.rollouts.get(event.key)
    if entry is None or event.plan_version != entry.plan.version:
        return lambda: None
    serve: Callable[[], None] = lambda: None  # noqa: E731
    if event.type == "rollout_aborted" and entry.active:
        serve = _serve(tenant, offset, event, entry.plan, killed=True)

    def commit() -> None:
        assert entry is not None
        entry.changes.append((offset, event))
        if not entry.active:
            return
        if event.type == "rollout_approved" and event.step_index is not None:
            entry.approved_steps.add(event.step_index)
        elif event.type == "rollout_paused":
            entry.status = "paused"
        elif event.type == "rollout_resumed":
            entry.status = "running"
        elif event.type == "rollout_aborted":
            entry.status = "aborted"
            serve()

    return commit


def read_too_early(entry: RolloutEntry, event: RolloutDecided) -> bool:
    """Whether ``event``'s check read the log before the rollout's latest definition or
    command (so, written after it, the decision is void). A decision without
    ``read_offset`` (written before it existed) is taken as read at its own offset."""
    return (
        event.read_offset is not None
        and bool(entry.changes)
        and entry.changes[-1][0] >= event.read_offset
    )


def _decided(tenant: TenantState, offset: int, event: RolloutDecided) -> Callable[[], None]:
    entry = tenant.rollouts.get(event.key)
    if (
        entry is None
        or not entry.active
        or event.plan_version != entry.plan.version
        or event.check_index < entry.checks
        or event.step_index >= len(entry.plan.steps)
        or read_too_early(entry, event)
    ):
        return lambda: None
    serve: Callable[[], None] = lambda: None  # noqa: E731
    entering = event.decision == "advance" and not entry.entered
    if event.decision == "advance" or (event.decision == "complete" and entry.plan.target.is_flag):
        killed = False if entering else None
        serve = _serve(tenant, offset, event, entry.plan, traffic=event.percent, killed=killed)
    elif event.decision == "rollback":
        serve = _serve(tenant, offset, event, entry.plan, killed=True)

    def commit() -> None:
        assert entry is not None
        entry.checks = event.check_index + 1
        entry.decisions.append((offset, event))
        del entry.decisions[:-MAX_DECISIONS_KEPT]
        if event.decision == "advance":
            if entering:  # the entry gate passed: the rollout starts now
                entry.entered = True
                entry.started_at = event.evidence.inputs.as_of
            entry.step_index = event.step_index
            entry.step_started_at = event.evidence.inputs.as_of
        elif event.decision == "rollback":
            entry.status = "rolled_back"
            entry.automatic_rollbacks += 1
        elif event.decision == "complete":
            entry.status = "completed"
        serve()

    return commit
