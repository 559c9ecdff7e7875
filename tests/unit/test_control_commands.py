"""Control commands refuse invalid changes naming the field; the projection replays exactly."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.control import ApiKeyIssued, ControlEvent, TenantCreated
from schemas.experiment import Experiment
from schemas.flags import Flag
from services.control import commands
from services.control.commands import Author, Refused
from services.control_domain.api_keys import generate_key
from services.control_domain.control_state import ControlState

ADMIN = Author(tenant_id="acme", key_id="abcdef012345")


def _experiment(**fields: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "key": "checkout",
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
            **fields,
        }
    )


class Log:
    """A control state plus the events applied to it, in order."""

    def __init__(self) -> None:
        self.state = ControlState()
        self.events: list[ControlEvent] = []
        self.apply(TenantCreated(tenant_id="acme", author="operator"))

    def apply(self, event: ControlEvent | None) -> None:
        assert event is not None
        self.state.apply(len(self.events), event)
        self.events.append(event)


def _define(log: Log, experiment: Experiment, **options: Any) -> None:
    options = {"status_given": False, "create_only": False, "reason": "", **options}
    log.apply(commands.define_experiment(log.state, ADMIN, experiment, **options))


def _refusal(call: Any) -> Refused:
    with pytest.raises(Refused) as raised:
        call()
    return raised.value


def test_the_lifecycle_allows_only_its_transitions() -> None:
    log = Log()
    _define(log, _experiment(status="draft"))
    assert _refusal(lambda: commands.change_status(log.state, ADMIN, "checkout", "pause", ""))
    for action, status in [
        ("start", "running"),
        ("pause", "paused"),
        ("start", "running"),
        ("conclude", "concluded"),
    ]:
        log.apply(commands.change_status(log.state, ADMIN, "checkout", action, ""))  # type: ignore[arg-type]
        assert log.state.tenants["acme"].experiments["checkout"].experiment.status == status
    refused = _refusal(lambda: commands.change_status(log.state, ADMIN, "checkout", "start", ""))
    assert (refused.status, refused.problems[0].field) == (409, "status")
    assert "cannot start an experiment that is concluded" in refused.problems[0].reason
    refused = _refusal(lambda: _define(log, _experiment(version=2)))
    assert refused.problems[0].reason == "a concluded experiment cannot change"


@pytest.mark.parametrize(
    ("change", "status", "field", "reason"),
    [
        (
            lambda s: commands.define_experiment(
                s, ADMIN, _experiment(), status_given=False, create_only=True, reason=""
            ),
            409,
            "key",
            "already exists",
        ),
        (
            lambda s: commands.define_experiment(
                s,
                ADMIN,
                _experiment(
                    variants=[{"key": "control", "weight": 30}, {"key": "treatment", "weight": 70}]
                ),
                status_given=False,
                create_only=False,
                reason="",
            ),
            409,
            "variants",
            "needs a new version: give version 2",
        ),
        (
            lambda s: commands.define_experiment(
                s, ADMIN, _experiment(version=5), status_given=False, create_only=False, reason=""
            ),
            409,
            "version",
            "the next version is 2",
        ),
        (
            lambda s: commands.define_experiment(
                s,
                ADMIN,
                _experiment(version=2, status="paused"),
                status_given=True,
                create_only=False,
                reason="",
            ),
            409,
            "status",
            "change it with start, pause or conclude",
        ),
        (
            lambda s: commands.ramp_experiment(s, ADMIN, "checkout", 101, ""),
            422,
            "traffic",
            "above 100",
        ),
        (lambda s: commands.ramp_experiment(s, ADMIN, "nope", 10, ""), 404, "key", "no experiment"),
        (
            lambda s: commands.roll_back_experiment(s, ADMIN, "checkout", 1, ""),
            422,
            "to_version",
            "no earlier version 1",
        ),
        (
            lambda s: commands.define_experiment(
                s,
                ADMIN,
                _experiment(key="other", layer={"name": "l", "start": 40, "end": 60}),
                status_given=False,
                create_only=True,
                reason="",
            ),
            409,
            "layer",
            "overlaps experiment 'checkout'",
        ),
        (
            lambda s: commands.define_flag(
                s, ADMIN, Flag(key="checkout"), create_only=True, reason=""
            ),
            409,
            "key",
            "an experiment named 'checkout' already exists",
        ),
        (lambda s: commands.set_holdout(s, ADMIN, 120, ""), 422, "percent", "not a percent"),
        (lambda s: commands.revoke_key(s, ADMIN, "000000000000", ""), 404, "key_id", "no key"),
    ],
)
def test_an_invalid_change_is_refused_naming_the_field(
    change: Any, status: int, field: str, reason: str
) -> None:
    log = Log()
    _define(log, _experiment(layer={"name": "l", "start": 0, "end": 50}))
    refused = _refusal(lambda: change(log.state))
    assert refused.status == status
    [problem] = refused.problems
    assert problem.field == field and reason in problem.reason


def test_the_same_definition_again_changes_nothing_and_a_draft_changes_in_place() -> None:
    log = Log()
    _define(log, _experiment(status="draft"))
    same = commands.define_experiment(
        log.state,
        ADMIN,
        _experiment(status="draft"),
        status_given=True,
        create_only=False,
        reason="",
    )
    assert same is None
    edited = _experiment(
        name="Checkout",
        variants=[{"key": "control", "weight": 10}, {"key": "treatment", "weight": 90}],
    )
    _define(log, edited)
    assert log.state.tenants["acme"].experiments["checkout"].experiment.version == 1


def test_roll_back_restores_an_earlier_configuration_as_the_next_version() -> None:
    log = Log()
    _define(log, _experiment())
    _define(
        log,
        _experiment(
            version=2,
            variants=[{"key": "control", "weight": 20}, {"key": "treatment", "weight": 80}],
        ),
    )
    log.apply(commands.roll_back_experiment(log.state, ADMIN, "checkout", 1, "bad"))
    current = log.state.tenants["acme"].experiments["checkout"].experiment
    assert current.version == 3
    assert current.variant_weights() == {"control": 50, "treatment": 50}


def test_a_kill_switch_turns_off_flags_and_experiments() -> None:
    log = Log()
    _define(log, _experiment())
    log.apply(
        commands.define_flag(
            log.state, ADMIN, Flag(key="nav", ramp=50), create_only=True, reason=""
        )
    )
    for key in ("checkout", "nav"):
        log.apply(commands.set_kill_switch(log.state, ADMIN, key, True, "incident"))
        assert commands.set_kill_switch(log.state, ADMIN, key, True, "") is None
    snapshot = log.state.tenants["acme"].snapshot()
    assert snapshot.experiments[0].killed and snapshot.flags[0].killed


def test_replaying_the_log_gives_the_same_projection() -> None:
    log = Log()
    key = generate_key()
    log.apply(
        ApiKeyIssued(
            tenant_id="acme",
            author="operator",
            key_id=key.key_id,
            key_hash=key.key_hash,
            role="admin",
        )
    )
    _define(log, _experiment(status="draft"))
    log.apply(commands.change_status(log.state, ADMIN, "checkout", "start", "go"))
    log.apply(commands.ramp_experiment(log.state, ADMIN, "checkout", 30, "slower"))
    log.apply(commands.revoke_key(log.state, ADMIN, key.key_id, "leaked"))
    replayed = ControlState()
    for offset, event in enumerate(log.events):
        replayed.apply(offset, event)
    tenant, again = log.state.tenants["acme"], replayed.tenants["acme"]
    assert again.snapshot() == tenant.snapshot()
    assert again.history == tenant.history
    assert replayed.keys.rows() == log.state.keys.rows()
    record = replayed.keys.authenticate(key.secret_key)
    assert record is not None and record.revoked
    assert replayed.keys.authenticate(key.secret_key[:-1] + "x") is None
