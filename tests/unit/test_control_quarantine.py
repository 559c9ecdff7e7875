"""Poison on the control topic stays its tenant's problem; only readable events get written.

``apply_message`` is what every control follower runs per message: a message that cannot
be read or applied is quarantined (counted, shown to the tenant it names) and the state
goes on. ``readable_payload`` is the control service's check before it writes anything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import services.control_domain.control_state as control_state
from schemas.control import (
    ExperimentDefined,
    FlagDefined,
    MetricDefined,
    TenantCreated,
    control_event_json,
)
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.limits import MAX_CONTROL_EVENT_BYTES, MAX_QUARANTINE_REASON_CHARS
from services.control.commands import Refused
from services.control.readback import readable_payload
from services.control_domain.control_log import apply_message
from services.control_domain.control_state import ControlState


def _nested(depth: int) -> Any:
    value: Any = True
    for _ in range(depth):
        value = [value]
    return value


def _flag_message(tenant: str, key: str, on_value: Any) -> bytes:
    """A flag_defined event as JSON, written without the model (as a hostile writer would)."""
    return json.dumps(
        {
            "type": "flag_defined",
            "tenant_id": tenant,
            "author": "operator",
            "flag": {"key": key, "value_type": "json", "on_value": on_value},
        }
    ).encode()


def _state_with_tenants() -> ControlState:
    state = ControlState()
    for offset, tenant in enumerate(("alice", "mallory")):
        apply_message(
            state,
            offset,
            f"{tenant}:".encode(),
            control_event_json(TenantCreated(tenant_id=tenant, author="operator")),
        )
    return state


@pytest.mark.parametrize(
    ("key", "value", "tenant", "subject", "reason"),
    [
        (
            b"mallory:poison",
            _flag_message("mallory", "poison", _nested(50)),
            "mallory",
            "poison",
            "flag.on_value: nested deeper than 16 levels",
        ),
        (
            b"mallory:poison",
            _flag_message("mallory", "poison", _nested(250)),
            "mallory",
            "poison",
            "recursion limit exceeded",
        ),
        (b"mallory:poison", b"\xff\xfe not json", "mallory", "poison", "Invalid JSON"),
        (b"mallory:poison", None, "mallory", "poison", "tombstone"),
        (b"", b'{"type": "flag_defined", "tenant_id": "mallory"}', "mallory", None, "flag"),
        (b"", b"[" * 100_000, None, None, "Invalid JSON"),
    ],
)
def test_an_unreadable_message_is_quarantined_for_its_tenant_and_the_log_goes_on(
    key: bytes, value: bytes | None, tenant: str | None, subject: str | None, reason: str
) -> None:
    state = _state_with_tenants()
    assert apply_message(state, 2, key, value) is None
    assert state.next_offset == 3 and state.quarantined_count == 1
    if tenant is not None:
        [quarantined] = state.tenants[tenant].quarantined
        assert (quarantined.offset, quarantined.key) == (2, subject)
        assert reason in quarantined.reason
        assert len(quarantined.reason) <= MAX_QUARANTINE_REASON_CHARS + 40
    assert state.tenants["alice"].quarantined == []

    # The next tenant's event is applied as if nothing had happened.
    good = FlagDefined(tenant_id="alice", author="operator", flag=Flag(key="banner"))
    assert apply_message(state, 3, b"alice:banner", control_event_json(good)) == good
    assert state.tenants["alice"].flags["banner"].flag == good.flag


def test_an_event_the_projection_cannot_apply_changes_nothing_and_is_quarantined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _state_with_tenants()
    first = FlagDefined(tenant_id="mallory", author="operator", flag=Flag(key="f"))
    apply_message(state, 2, b"mallory:f", control_event_json(first))
    before = (dict(state.tenants["mallory"].flags), list(state.tenants["mallory"].history))

    def broken_diff(*_args: Any, **_kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(control_state, "config_diff", broken_diff)
    second = FlagDefined(
        tenant_id="mallory", author="operator", flag=Flag(key="f", version=2, ramp=50)
    )
    assert apply_message(state, 3, b"mallory:f", control_event_json(second)) is None
    mallory = state.tenants["mallory"]
    assert (dict(mallory.flags), list(mallory.history)) == before  # nothing half-applied
    assert mallory.flags["f"].flag.ramp == 0
    [quarantined] = mallory.quarantined_of("f")
    assert quarantined.type == "flag_defined" and "RecursionError" in quarantined.reason
    assert state.next_offset == 4


def test_a_rebuild_quarantines_the_same_events() -> None:
    messages = [
        (b"alice:", control_event_json(TenantCreated(tenant_id="alice", author="operator"))),
        (b"mallory:poison", _flag_message("mallory", "poison", _nested(300))),
        (
            b"alice:f",
            control_event_json(FlagDefined(tenant_id="alice", author="o", flag=Flag(key="f"))),
        ),
    ]
    states = []
    for _ in range(2):
        state = ControlState()
        for offset, (key, value) in enumerate(messages):
            apply_message(state, offset, key, value)
        states.append(state)
    assert states[0].tenants["mallory"].quarantined == states[1].tenants["mallory"].quarantined
    assert len(states[0].tenants["mallory"].quarantined) == 1


def test_the_control_service_writes_only_what_a_follower_reads_back() -> None:
    state = _state_with_tenants()
    fine = FlagDefined(tenant_id="alice", author="k", flag=Flag(key="f"))
    assert readable_payload(fine, state) == control_event_json(fine)

    # Built without validation, as a bug or a future field could: never reaches the topic.
    deep = FlagDefined.model_construct(
        type="flag_defined",
        tenant_id="mallory",
        author="k",
        reason="",
        event_id=fine.event_id,
        occurred_at=fine.occurred_at,
        flag=Flag.model_construct(**{**Flag(key="f").__dict__, "on_value": _nested(40)}),
    )
    with pytest.raises(Refused) as raised:
        readable_payload(deep, state)
    assert raised.value.status == 422
    assert [p.field for p in raised.value.problems] == ["flag.on_value"]

    endless = MetricDefinition.model_construct(
        **{**MetricDefinition(name="m", event="e", type="sum").__dict__, "window_hours": 1e300}
    )
    metric_event = MetricDefined.model_construct(
        type="metric_defined",
        tenant_id="mallory",
        author="k",
        reason="",
        event_id=fine.event_id,
        occurred_at=fine.occurred_at,
        version=1,
        metric=endless,
    )
    with pytest.raises(Refused) as raised:
        readable_payload(metric_event, state)
    assert [p.field for p in raised.value.problems] == ["metric.window_hours"]


def test_a_control_event_too_large_for_the_topic_is_refused_before_it_is_written() -> None:
    values = [f"{index:04d}" + "x" * 240 for index in range(1000)]
    rule = {"any": [{"attribute": f"a{n}", "op": "in", "values": values} for n in range(3)]}
    experiment = Experiment.model_validate(
        {
            "key": "big",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
            "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
            "targeting": rule,
        }
    )
    event = ExperimentDefined(tenant_id="alice", author="k", experiment=experiment)
    with pytest.raises(Refused) as raised:
        readable_payload(event, _state_with_tenants())
    assert raised.value.status == 422
    assert f"the limit is {MAX_CONTROL_EVENT_BYTES}" in raised.value.problems[0].reason


def test_history_in_memory_keeps_the_newest_changes_per_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control_state, "MAX_HISTORY_PER_TENANT", 3)
    state = _state_with_tenants()
    for offset, ramp in enumerate(range(5), start=2):
        event = FlagDefined(
            type="flag_ramped",
            tenant_id="alice",
            author="k",
            flag=Flag(key="f", ramp=ramp),
        )
        apply_message(state, offset, b"alice:f", control_event_json(event))
    history = state.tenants["alice"].history_of("f")
    assert [entry.offset for entry in history] == [4, 5, 6]
    assert state.tenants["alice"].flags["f"].flag.ramp == 4
