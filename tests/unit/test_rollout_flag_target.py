"""A rollout plan whose target is a flag: what applying, deciding and commanding do to the
flag the SDKs are served, what the controller reads (the flag's ``off`` holdback against
its ``on`` arm, the tenant's metrics), what is refused, and replay through the same
projection and decision function as an experiment's rollout."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from analytics.rollouts.replay_log import simulate_days
from liftstream.local_config import ConfigEvaluator
from liftstream_cli.yaml_files import load_model_file, load_model_files
from schemas.config import FlagConfig
from schemas.control import ControlEvent, FlagDefined, KillSwitchSet, MetricDefined, TenantCreated
from schemas.errors import field_errors
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag, rollout_exposure_key
from schemas.rollout import ArmInput, CheckInputs, MetricInput, RolloutPlan
from services.control.commands import Author, Refused, ramp_flag
from services.control.rollout_commands import command_rollout, define_rollout
from services.control_domain.control_state import ControlState
from services.controller.checks import decision_event, due_checks, gather_inputs
from services.controller.replay import replay
from services.stream.definitions import compile_live

AUTHOR = Author(tenant_id="acme", key_id="k1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EU = {"attribute": "region", "op": "eq", "value": "eu"}
#: The exposure key of rollout "new-search" (plan version 1) of flag "new-search".
ROLLOUT_V1 = "new-search..new-search.v1"


def plan(**changes: Any) -> RolloutPlan:
    document: dict[str, Any] = {
        "key": "new-search",
        "target": {"flag": "new-search", "segment": EU},
        "steps": [
            {"percent": 1, "min_units_per_arm": 10},
            {"percent": 5, "min_units_per_arm": 10},
            {"percent": 25, "min_units_per_arm": 10},
        ],
        "guardrails": [{"metric": "errors", "direction": "decrease"}],
        "check_interval_s": 10,
    }
    document.update(changes)
    return RolloutPlan.model_validate(document)


class Log:
    """A control log in memory: a tenant, a flag that is off, and the tenant's metrics."""

    def __init__(self, flag: Flag | None = None) -> None:
        self.state = ControlState()
        self.events: list[tuple[int, ControlEvent]] = []
        self.add(TenantCreated(tenant_id="acme", author="operator", occurred_at=T0))
        self.add(
            FlagDefined(
                tenant_id="acme",
                author="k1",
                flag=flag or Flag(key="new-search"),
                occurred_at=T0,
            )
        )
        for name, kind in (("errors", "count"), ("latency", "mean")):
            metric = MetricDefinition(name=name, event=f"request_{name}", type=kind)
            self.add(MetricDefined(tenant_id="acme", author="k1", version=1, metric=metric))
        capped = MetricDefinition.model_validate(
            {"name": "spend", "event": "purchase", "type": "sum", "cap": {"percentile": 99}}
        )
        self.add(MetricDefined(tenant_id="acme", author="k1", version=1, metric=capped))

    def add(self, event: ControlEvent | None) -> None:
        assert event is not None
        offset = len(self.events)
        self.events.append((offset, event))
        self.state.apply(offset, event)

    def rollout(self):  # type: ignore[no-untyped-def]
        return self.state.tenants["acme"].rollouts["new-search"]

    def flag(self):  # type: ignore[no-untyped-def]
        return self.state.tenants["acme"].flags["new-search"]

    def served(self) -> ConfigEvaluator:
        """What an SDK polling the tenant's snapshot now evaluates."""
        return ConfigEvaluator(self.state.tenants["acme"].snapshot())

    def check(self, at: datetime, control: ArmInput, treatment: ArmInput) -> str:
        (due,) = due_checks(self.state, at)
        event = decision_event(due, CheckInputs(as_of=at, control=control, treatment=treatment))
        self.add(event)
        return event.decision


def arm(units: int, errors: int) -> ArmInput:
    return ArmInput(
        units=units, metrics={"errors": MetricInput(n=units, sum_x=errors, sum_xx=errors * 1.5)}
    )


def applied(**changes: Any) -> Log:
    log = Log()
    event = define_rollout(log.state, AUTHOR, plan(**changes), "go")
    assert event is not None
    log.add(event.model_copy(update={"occurred_at": T0}))
    return log


def on_share(evaluator: ConfigEvaluator, units: int = 20_000, region: str = "eu") -> float:
    on = sum(
        evaluator.flag("new-search", f"u{i}", {"region": region}) is True for i in range(units)
    )
    return on / units


def test_applying_a_flag_plan_serves_its_first_step_to_the_segment_with_a_holdback() -> None:
    log = applied()
    flag = log.flag().flag
    assert (flag.ramp, flag.holdback) == (1, 1)
    assert flag.targeting is not None
    assert not log.flag().killed
    history = log.state.tenants["acme"].history[-1]
    assert (history.type, history.key) == ("rollout_defined", "new-search")
    assert {change.field for change in history.diff} >= {"ramp", "holdback", "targeting"}
    assert 0.005 < on_share(log.served()) < 0.015
    assert on_share(log.served(), region="us") == 0


def test_advance_ramps_the_flag_complete_serves_it_to_the_whole_segment() -> None:
    log = applied(steps=[{"percent": 1}, {"percent": 5}])
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "advance"
    assert (log.flag().flag.ramp, log.flag().flag.holdback) == (5, 5)
    assert 0.04 < on_share(log.served()) < 0.06
    assert log.check(T0 + timedelta(seconds=20), arm(900, 90), arm(900, 90)) == "complete"
    completed = log.events[-1][1]
    assert completed.percent == 100  # type: ignore[union-attr]
    assert (log.flag().flag.ramp, log.flag().flag.holdback) == (100, 0)
    assert log.rollout().status == "completed" and log.rollout().percent == 100
    assert on_share(log.served()) == 1.0
    assert on_share(log.served(), region="us") == 0  # still the segment only
    assert log.state.tenants["acme"].history[-1].author == "controller"


def test_a_bad_flag_is_rolled_back_and_served_off_to_everyone() -> None:
    log = applied()
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "advance"
    assert log.check(T0 + timedelta(seconds=20), arm(5000, 500), arm(5000, 900)) == "rollback"
    assert log.flag().killed
    assert (log.rollout().status, log.rollout().percent) == ("rolled_back", 0)
    assert on_share(log.served()) == 0
    assert due_checks(log.state, T0 + timedelta(hours=1)) == []


def test_abort_kills_the_flag_and_pause_holds_it() -> None:
    log = applied()
    log.add(command_rollout(log.state, AUTHOR, "new-search", "pause", "weekend"))
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "hold"
    assert log.flag().flag.ramp == 1
    log.add(command_rollout(log.state, AUTHOR, "new-search", "abort", "changed our mind"))
    assert log.flag().killed and on_share(log.served()) == 0
    assert log.rollout().automatic_rollbacks == 0


class Aggregates:
    """What ``AggregateView.arm`` answers, from a table of (key, variant) -> arm."""

    def __init__(self, arms: dict[tuple[str, str], ArmInput]) -> None:
        self.arms = arms
        self.asked: list[tuple[str, str, list[str]]] = []

    def arm(self, _tenant: str, key: str, variant: str, metrics: list[Any]) -> ArmInput:
        self.asked.append((key, variant, [metric.name for metric in metrics]))
        return self.arms[(key, variant)]

    def dead_letters_since(self, _tenant: str, _since: datetime) -> int:
        return 0


def test_the_controller_compares_the_flags_on_arm_with_its_held_back_off_arm() -> None:
    log = applied()
    key = ROLLOUT_V1  # the rollout's own exposure key, not the flag's
    aggregates = Aggregates({(key, "off"): arm(400, 20), (key, "on"): arm(410, 21)})
    at = T0 + timedelta(seconds=10)
    (due,) = due_checks(log.state, at)
    inputs = gather_inputs(log.state, aggregates, due, at)  # type: ignore[arg-type]
    assert aggregates.asked == [(key, "off", ["errors"]), (key, "on", ["errors"])]
    assert (inputs.control.units, inputs.treatment.units) == (400, 410)
    assert (inputs.control_weight, inputs.treatment_weight) == (50, 50)


def test_replaying_a_flag_rollouts_log_reproduces_every_decision() -> None:
    log = applied()
    at = T0
    for index in range(5):
        if not log.rollout().active:
            break
        at += timedelta(seconds=10)
        log.check(at, arm(100 * (index + 1), 10 * (index + 1)), arm(100 * (index + 1), 10))
    decided = [e for _, e in log.events if e.type == "rollout_decided"]
    assert [e.decision for e in decided] == ["advance", "advance", "complete"]  # type: ignore[union-attr]
    assert replay(log.events) == (3, [])


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"flag": "x", "variant": "on"}, "target.variant"),
        ({"flag": "x", "experiment": "e", "variant": "v"}, "target.flag"),
        ({"experiment": "e"}, "target.variant"),
        ({}, "target.experiment"),
    ],
)
def test_a_target_is_an_experiments_variant_or_a_flag(target: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        plan(target=target)
    assert [error.field for error in field_errors(refused.value)] == [field]


def test_a_flags_step_holds_as_many_units_back_so_it_is_at_most_half() -> None:
    with pytest.raises(ValidationError, match=r"steps\.1\.percent"):
        plan(steps=[{"percent": 25}, {"percent": 60}])


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        ({"target": {"flag": "nope"}}, "target.flag", 422),
        ({"guardrails": [{"metric": "nope", "direction": "decrease"}]}, "guardrails.0.metric", 422),
        (
            {"guardrails": [{"metric": "spend", "direction": "increase"}]},
            "guardrails.0.metric",
            422,
        ),
    ],
)
def test_a_flag_plan_that_does_not_fit_is_refused_naming_the_field(
    changes: dict[str, Any], field: str, status: int
) -> None:
    with pytest.raises(Refused) as refused:
        define_rollout(Log().state, AUTHOR, plan(**changes), "")
    assert (refused.value.status, refused.value.problems[0].field) == (status, field)


def test_a_flag_on_outside_a_rollout_is_refused_a_killed_one_starts_with_its_own_arms() -> None:
    log = Log(Flag(key="new-search", ramp=30))
    with pytest.raises(Refused) as refused:
        define_rollout(log.state, AUTHOR, plan(), "")
    assert (refused.value.status, refused.value.problems[0].field) == (409, "target.flag")
    assert "turn it off" in refused.value.problems[0].reason
    (served,) = log.state.tenants["acme"].snapshot().flags
    assert served.logged_key == "new-search"  # served outside a rollout: the flag's key
    log.add(KillSwitchSet(tenant_id="acme", author="k1", key="new-search", killed=True))
    log.add(define_rollout(log.state, AUTHOR, plan(), ""))
    assert not log.flag().killed and log.flag().flag.ramp == 1
    (served,) = log.state.tenants["acme"].snapshot().flags
    assert served.logged_key == ROLLOUT_V1  # its exposures at 30% are not in the arms


def test_a_second_rollout_of_the_flag_after_a_rollback_starts_with_empty_arms() -> None:
    log = applied()
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "advance"
    assert log.check(T0 + timedelta(seconds=20), arm(5000, 500), arm(5000, 900)) == "rollback"
    (served,) = log.state.tenants["acme"].snapshot().flags
    assert served.exposure_key is None and served.logged_key == "new-search"
    # The team fixes the code and applies the plan again (its next version).
    again = plan(version=2)
    event = define_rollout(log.state, AUTHOR, again, "fixed")
    assert event is not None
    at = T0 + timedelta(minutes=5)
    log.add(event.model_copy(update={"occurred_at": at}))
    (served,) = log.state.tenants["acme"].snapshot().flags
    second = "new-search..new-search.v2"
    assert served.exposure_key == second and not served.killed
    # The SDK logs the second rollout's units under its key (the same units are on).
    evaluator = ConfigEvaluator(log.state.tenants["acme"].snapshot()).flag_evaluator("new-search")
    assert evaluator is not None and evaluator.config.logged_key == second
    # The first rollout's 5,000 + 5,000 units stay under its key; the second's arms are empty.
    empty = ArmInput(units=0, metrics={})
    aggregates = Aggregates(
        {
            (ROLLOUT_V1, "off"): arm(5000, 500),
            (ROLLOUT_V1, "on"): arm(5000, 900),
            (second, "off"): empty,
            (second, "on"): empty,
        }
    )
    (due,) = due_checks(log.state, at + timedelta(seconds=10))
    inputs = gather_inputs(log.state, aggregates, due, at)  # type: ignore[arg-type]
    assert (inputs.control.units, inputs.treatment.units) == (0, 0)
    assert {key for key, _, _ in aggregates.asked} == {second}
    # A new rollout (another name) of the same flag gets its own arms too.
    assert rollout_exposure_key("new-search", "search-retry", 1) != second


def test_an_exposure_key_is_a_valid_bounded_key_for_every_rollout_and_version() -> None:
    longest = "f" * 100
    keys = {rollout_exposure_key(longest, "r" * 100, version) for version in (1, 2)}
    keys.add(rollout_exposure_key(longest, "s" * 100, 1))
    assert len(keys) == 3
    for key in keys | {ROLLOUT_V1}:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", key), key
    assert rollout_exposure_key("new-search", "new-search", 1) == ROLLOUT_V1


def test_a_snapshot_without_a_rollout_is_written_as_before_and_unknown_fields_are_read() -> None:
    log = Log()
    (served,) = log.state.tenants["acme"].snapshot().model_dump(mode="json")["flags"]
    assert set(served) == {"flag", "killed"}
    newer = {"flag": {"key": "new-search"}, "killed": False, "from_a_newer_server": 1}
    assert FlagConfig.model_validate(newer).logged_key == "new-search"


def test_one_active_rollout_per_flag_and_the_ramp_leaves_room_for_the_holdback() -> None:
    log = applied()
    with pytest.raises(Refused) as other:
        define_rollout(log.state, AUTHOR, plan(key="second"), "")
    assert (other.value.status, other.value.problems[0].field) == (409, "target.flag")
    with pytest.raises(Refused) as ramp:
        ramp_flag(log.state, AUTHOR, "new-search", 99.5, "too far")
    assert ramp.value.problems[0].field == "ramp"


def test_simulate_replays_a_flag_plan_against_an_experiment_of_the_same_change() -> None:
    experiment = Experiment.model_validate(
        {
            "key": "search-test",
            "variants": [{"key": "control", "weight": 50}, {"key": "new", "weight": 50}],
            "metrics": [{"name": "errors", "event": "request_error", "type": "count"}],
        }
    )

    def day(number: int, errors_c: int, errors_t: int) -> dict[str, Any]:
        def variant(key: str, errors: int) -> dict[str, Any]:
            stats = [{"event": "request_error", "aggregation": "count", "sum": errors}]
            return {
                "variant_key": key,
                "units": 5000,
                "excluded_units": 0,
                "stats": [stats[0] | {"sum_sq": errors}],
            }

        return {
            "day": f"2026-05-{number:02d}",
            "variants": [variant("control", errors_c), variant("new", errors_t)],
        }

    checks = simulate_days(plan(), experiment, [day(1, 500, 500), day(2, 500, 900)])
    assert [check.outcome.decision for check in checks] == ["advance", "rollback"]
    assert checks[-1].outcome.evidence.units_treatment == 5000


def test_the_examples_flag_plan_applies_to_its_flag_and_the_example_metrics() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    flag = load_model_file(examples / "flag-new-checkout.yaml", Flag, "flag")
    the_plan = load_model_file(examples / "rollout-new-checkout-flag.yaml", RolloutPlan, "plan")
    log = Log(flag)
    for metric in load_model_files(examples / "metrics" / "checkout.yaml", MetricDefinition, "m"):
        log.add(MetricDefined(tenant_id="acme", author="k1", version=1, metric=metric))
    log.add(define_rollout(log.state, AUTHOR, the_plan, "example"))
    served = log.state.tenants["acme"].flags["new-checkout"].flag
    assert (served.ramp, served.holdback) == (1, 1)


def test_the_stream_keeps_a_flag_rollouts_mean_metrics_live_while_it_runs() -> None:
    log = applied(
        guardrails=[
            {"metric": "errors", "direction": "decrease"},
            {"metric": "latency", "direction": "decrease"},
        ]
    )
    live, failed = compile_live(log.state)
    assert failed == []
    # The count is kept for every exposed key anyway; the mean for the rollout's key.
    assert [m.metric.name for m in live[("acme", ROLLOUT_V1)]] == ["latency"]
    log.add(command_rollout(log.state, AUTHOR, "new-search", "abort", "stop"))
    assert ("acme", ROLLOUT_V1) not in compile_live(log.state)[0]


@pytest.mark.parametrize(
    ("target", "valid"),
    [
        ({"flag": "x"}, True),
        ({"experiment": "e", "variant": "v"}, True),
        ({"flag": "x", "experiment": None, "variant": None}, True),  # null: unset
        ({"flag": "x", "variant": "v"}, False),
        ({"flag": "x", "experiment": "e", "variant": "v"}, False),
        ({"experiment": "e"}, False),
        ({}, False),
    ],
)
def test_the_exported_json_schema_says_what_the_model_accepts(
    target: dict[str, Any], valid: bool
) -> None:
    exported = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"
    schema = json.loads((exported / "rollout_plan.schema.json").read_text())
    document = {"key": "k", "steps": [{"percent": 1}], "target": target}
    assert jsonschema.Draft202012Validator(schema).is_valid(document) is valid
    try:
        RolloutPlan.model_validate(document)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is valid


def test_an_approval_gate_holds_a_flag_and_a_decision_written_twice_counts_once() -> None:
    log = applied(steps=[{"percent": 1}, {"percent": 5, "approval": True}])
    assert log.check(T0 + timedelta(seconds=10), arm(500, 50), arm(500, 50)) == "hold"
    assert log.flag().flag.ramp == 1  # held on 1% until a person approves
    log.add(command_rollout(log.state, AUTHOR, "new-search", "approve", "dashboards fine"))
    (due,) = due_checks(log.state, T0 + timedelta(seconds=20))
    at = T0 + timedelta(seconds=20)
    advance = decision_event(
        due, CheckInputs(as_of=at, control=arm(600, 60), treatment=arm(600, 60))
    )
    log.add(advance)
    log.add(advance)  # a controller killed after writing, whose write reached the log twice
    assert advance.decision == "advance"
    assert (log.rollout().checks, log.flag().flag.ramp, log.flag().flag.holdback) == (2, 5, 5)
    assert replay(log.events) == (2, [])


def test_an_experiments_target_is_written_as_before_flags_could_be_targets() -> None:
    """Services from before flag targets forbid unknown fields in a plan's target."""
    experiment_plan = plan(target={"experiment": "checkout", "variant": "candidate"})
    assert set(experiment_plan.model_dump(mode="json")["target"]) == {
        "experiment",
        "variant",
        "segment",
    }
    flag_plan = plan()
    assert set(flag_plan.model_dump(mode="json")["target"]) == {"flag", "segment"}
    for written in (experiment_plan, flag_plan):
        assert RolloutPlan.model_validate_json(written.model_dump_json()) == written
