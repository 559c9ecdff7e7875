"""Rollout plans on the control log: what applying, deciding and commanding do to the
rollout and to its experiment, what is refused, and replay / restart idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.control import ControlEvent, ExperimentDefined, TenantCreated
from schemas.experiment import Experiment
from schemas.rollout import ArmInput, CheckInputs, MetricInput, RolloutPlan
from services.control.commands import Author, Refused
from services.control.rollout_commands import command_rollout, define_rollout
from services.control_domain.control_state import ControlState
from services.controller.checks import decision_event, decision_id, due_checks
from services.controller.replay import replay

AUTHOR = Author(tenant_id="acme", key_id="k1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def experiment() -> Experiment:
    return Experiment.model_validate(
        {
            "key": "checkout",
            "variants": [{"key": "control", "weight": 50}, {"key": "candidate", "weight": 50}],
            "metrics": [
                {"name": "errors", "event": "request_error", "type": "count"},
                {"name": "purchase", "event": "purchase", "type": "conversion"},
            ],
            "traffic": 100,
            "status": "draft",
        }
    )


def plan(**changes: Any) -> RolloutPlan:
    document: dict[str, Any] = {
        "key": "new-checkout",
        "target": {
            "experiment": "checkout",
            "variant": "candidate",
            "segment": {"attribute": "region", "op": "eq", "value": "eu"},
        },
        "steps": [
            {"percent": 1, "min_units_per_arm": 10},
            {"percent": 5, "min_units_per_arm": 10, "approval": True},
            {"percent": 25, "min_units_per_arm": 10},
        ],
        "guardrails": [{"metric": "errors", "direction": "decrease"}],
        "check_interval_s": 10,
    }
    document.update(changes)
    return RolloutPlan.model_validate(document)


class Log:
    """A control log in memory, folded as every follower folds it."""

    def __init__(self) -> None:
        self.state = ControlState()
        self.events: list[tuple[int, ControlEvent]] = []
        self.add(TenantCreated(tenant_id="acme", author="operator", occurred_at=T0))
        self.add(
            ExperimentDefined(
                tenant_id="acme", author="k1", experiment=experiment(), occurred_at=T0
            )
        )

    def add(self, event: ControlEvent | None) -> None:
        assert event is not None
        offset = len(self.events)
        self.events.append((offset, event))
        self.state.apply(offset, event)

    def rollout(self):  # type: ignore[no-untyped-def]
        return self.state.tenants["acme"].rollouts["new-checkout"]

    def entry(self):  # type: ignore[no-untyped-def]
        return self.state.tenants["acme"].experiments["checkout"]

    def check(self, at: datetime, control: ArmInput, treatment: ArmInput) -> str:
        (due,) = due_checks(self.state, at)
        event = decision_event(due, CheckInputs(as_of=at, control=control, treatment=treatment))
        self.add(event)
        return event.decision


def arm(units: int, errors: int) -> ArmInput:
    return ArmInput(
        units=units,
        metrics={"errors": MetricInput(n=units, sum_x=errors, sum_xx=errors * 1.5)},
    )


def applied(**changes: Any) -> Log:
    log = Log()
    event = define_rollout(log.state, AUTHOR, plan(**changes), "go")
    assert event is not None
    log.add(event.model_copy(update={"occurred_at": T0}))
    return log


def test_applying_a_plan_serves_its_first_step_to_its_segment() -> None:
    log = applied()
    served = log.entry().experiment
    assert served.traffic == 1
    assert served.status == "running"
    assert served.targeting is not None
    assert log.rollout().status == "running"
    assert log.state.tenants["acme"].history[-1].type == "rollout_defined"


def test_advance_ramps_the_experiment_and_rollback_kills_it() -> None:
    log = applied(steps=[{"percent": 1}, {"percent": 5}])
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "advance"
    assert log.entry().experiment.traffic == 5
    assert log.rollout().step_index == 1
    bad = log.check(T0 + timedelta(seconds=20), arm(5000, 500), arm(5000, 900))
    assert bad == "rollback"
    assert log.entry().killed
    assert log.rollout().status == "rolled_back"
    assert log.rollout().automatic_rollbacks == 1
    assert due_checks(log.state, T0 + timedelta(hours=1)) == []


def test_a_check_is_due_only_after_the_interval() -> None:
    log = applied()
    assert due_checks(log.state, T0 + timedelta(seconds=9)) == []
    assert len(due_checks(log.state, T0 + timedelta(seconds=10))) == 1
    log.check(T0 + timedelta(seconds=10), arm(5, 0), arm(5, 0))
    assert due_checks(log.state, T0 + timedelta(seconds=15)) == []


def test_a_decision_written_twice_is_applied_once() -> None:
    """A controller killed after writing but before seeing its write makes the check
    again after a restart only if the log does not have it; if both copies reach the log,
    the second (same id) changes nothing."""
    log = applied(steps=[{"percent": 1}, {"percent": 5}, {"percent": 25}])
    (due,) = due_checks(log.state, T0 + timedelta(seconds=10))
    first = decision_event(
        due,
        CheckInputs(as_of=T0 + timedelta(seconds=10), control=arm(500, 5), treatment=arm(500, 5)),
    )
    log.add(first)
    log.add(first)
    assert log.rollout().step_index == 1
    assert log.rollout().checks == 1
    assert first.event_id == decision_id("acme", "new-checkout", 1, 0)


def test_approval_gate_then_pause_resume_and_abort() -> None:
    log = applied()
    assert log.check(T0 + timedelta(seconds=10), arm(50, 1), arm(50, 1)) == "hold"
    assert "needs an approval" in log.events[-1][1].evidence.reasons[-1]  # type: ignore[union-attr]
    with pytest.raises(Refused) as refused:
        command_rollout(log.state, AUTHOR, "new-checkout", "approve", "ok", step=3)
    assert refused.value.problems[0].field == "step"
    log.add(command_rollout(log.state, AUTHOR, "new-checkout", "approve", "looks fine"))
    assert log.check(T0 + timedelta(seconds=20), arm(60, 1), arm(60, 1)) == "advance"
    log.add(command_rollout(log.state, AUTHOR, "new-checkout", "pause", "weekend"))
    assert log.check(T0 + timedelta(seconds=30), arm(70, 1), arm(70, 1)) == "hold"
    log.add(command_rollout(log.state, AUTHOR, "new-checkout", "resume", "monday"))
    log.add(command_rollout(log.state, AUTHOR, "new-checkout", "abort", "changed our mind"))
    assert log.entry().killed
    assert log.rollout().status == "aborted"
    assert log.rollout().automatic_rollbacks == 0
    with pytest.raises(Refused):
        command_rollout(log.state, AUTHOR, "new-checkout", "resume", "again")


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        ({"target": {"experiment": "nope", "variant": "candidate"}}, "target.experiment", 422),
        ({"target": {"experiment": "checkout", "variant": "control"}}, "target.variant", 422),
        (
            {"guardrails": [{"metric": "latency", "direction": "decrease"}]},
            "guardrails.0.metric",
            422,
        ),
    ],
)
def test_a_plan_that_does_not_fit_its_experiment_is_refused_naming_the_field(
    changes: dict[str, Any], field: str, status: int
) -> None:
    with pytest.raises(Refused) as refused:
        define_rollout(Log().state, AUTHOR, plan(**changes), "")
    assert refused.value.status == status
    assert refused.value.problems[0].field == field


def test_versions_and_one_active_rollout_per_experiment() -> None:
    log = applied()
    assert define_rollout(log.state, AUTHOR, plan(), "again") is None
    with pytest.raises(Refused) as refused:
        define_rollout(log.state, AUTHOR, plan(description="changed"), "")
    assert refused.value.problems[0].field == "version"
    log.add(define_rollout(log.state, AUTHOR, plan(description="changed", version=2), ""))
    assert log.rollout().plan.version == 2
    with pytest.raises(Refused) as other:
        define_rollout(log.state, AUTHOR, plan(key="second"), "")
    assert (other.value.status, other.value.problems[0].field) == (409, "target.experiment")


def test_replaying_the_log_reproduces_every_decision_exactly() -> None:
    log = applied(steps=[{"percent": 1}, {"percent": 5, "approval": True}, {"percent": 25}])
    at = T0
    for index in range(6):
        if not log.rollout().active:
            break
        at += timedelta(seconds=10)
        if index == 2:
            log.add(command_rollout(log.state, AUTHOR, "new-checkout", "approve", ""))
        log.check(
            at,
            arm(100 * (index + 1), 10 * (index + 1)),
            arm(100 * (index + 1), 10 * (index + 1) + index),
        )
    decided = [e for _, e in log.events if e.type == "rollout_decided"]
    assert len(decided) >= 3
    replayed, differences = replay(log.events)
    assert (replayed, differences) == (len(decided), [])
    # A decision changed after the fact no longer replays.
    offset, tampered = next((o, e) for o, e in log.events if e.type == "rollout_decided")
    log.events[offset] = (offset, tampered.model_copy(update={"decision": "rollback"}))
    assert replay(log.events)[1]


def test_a_tenant_runs_at_most_20_rollouts_at_once() -> None:
    log = Log()
    for index in range(21):
        log.add(
            ExperimentDefined(
                tenant_id="acme",
                author="k1",
                experiment=experiment().model_copy(update={"key": f"e{index}"}),
            )
        )
    for index in range(20):
        change = {"key": f"r{index}", "target": {"experiment": f"e{index}", "variant": "candidate"}}
        log.add(define_rollout(log.state, AUTHOR, plan(**change), ""))
    with pytest.raises(Refused) as refused:
        define_rollout(
            log.state,
            AUTHOR,
            plan(key="r20", target={"experiment": "e20", "variant": "candidate"}),
            "",
        )
    assert (refused.value.status, refused.value.problems[0].field) == (409, "rollouts")


def test_a_decision_whose_check_read_the_log_before_an_approval_is_void() -> None:
    """An approval written while a check ran lands before the decision in the log, but the
    check did not see it: the decision is void (nothing changes, no check index used), the
    check is made again on the approved rollout, and replay gives every kept decision."""
    log = applied()
    at = T0 + timedelta(seconds=10)
    (due,) = due_checks(log.state, at)
    log.add(command_rollout(log.state, AUTHOR, "new-checkout", "approve", "looks fine"))
    stale = decision_event(due, CheckInputs(as_of=at, control=arm(50, 1), treatment=arm(50, 1)))
    assert stale.decision == "hold" and stale.read_offset == due.read_offset
    log.add(stale)
    assert (log.rollout().checks, log.rollout().decisions, log.rollout().step_index) == (0, [], 0)
    assert log.check(at, arm(50, 1), arm(50, 1)) == "advance"
    assert log.rollout().step_index == 1
    assert replay(log.events) == (1, [])
    # The same decision without the offset it read at would be kept, and not replay.
    old = applied()
    (due,) = due_checks(old.state, at)
    old.add(command_rollout(old.state, AUTHOR, "new-checkout", "approve", "looks fine"))
    old.add(stale.model_copy(update={"read_offset": None}))
    assert old.rollout().checks == 1
    assert replay(old.events)[1]
