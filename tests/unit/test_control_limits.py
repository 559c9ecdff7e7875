"""Every limit of the control plane's contracts refuses a breach naming the field.

What one tenant defines is read by every follower (control, collector, results, stream
worker) and served to SDKs: whatever passes these models must be readable back and
usable by every reader, so sizes, counts, depths and numeric ranges are bounded here.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.control import (
    ApiKeyIssued,
    ApiKeyRevoked,
    TenantCreated,
    control_event_json,
    parse_control_event,
)
from schemas.errors import field_errors
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.limits import (
    MAX_ACTIVE_KEYS_PER_TENANT,
    MAX_DEFINITIONS_PER_TENANT,
    MAX_FREE_FORM_BYTES,
    MAX_JSON_DEPTH,
    MAX_METRICS,
    MAX_NAME_CHARS,
    MAX_OVERRIDES,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    MAX_RULE_VALUES,
    MAX_TEXT_CHARS,
    MAX_VARIANTS,
    MAX_VERSION,
)
from services.control import commands
from services.control.commands import Author, Refused
from services.control_domain.api_keys import generate_key
from services.control_domain.control_state import ControlState

ADMIN = Author(tenant_id="acme", key_id="abcdef012345")
CONDITION = {"attribute": "plan", "op": "eq", "value": "pro"}


def _experiment(**fields: Any) -> dict[str, Any]:
    return {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
        **fields,
    }


def _nested(depth: int) -> Any:
    value: Any = True
    for _ in range(depth):
        value = [value]
    return value


def _refused_fields(model: Any, document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(document)
    return {problem.field: problem.reason for problem in field_errors(raised.value)}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "n" * (MAX_NAME_CHARS + 1)}, "name"),
        ({"owner": "o" * (MAX_NAME_CHARS + 1)}, "owner"),
        ({"seed": "s" * (MAX_NAME_CHARS + 1)}, "seed"),
        ({"hypothesis": "h" * (MAX_TEXT_CHARS + 1)}, "hypothesis"),
        (
            {
                "variants": [
                    {"key": "control", "weight": 50, "description": "d" * (MAX_TEXT_CHARS + 1)},
                    {"key": "treatment", "weight": 50},
                ]
            },
            "variants.0.description",
        ),
        (
            {"variants": [{"key": f"v{i}", "weight": 100 / 33} for i in range(MAX_VARIANTS + 1)]},
            "variants",
        ),
        (
            {
                "metrics": [
                    {"name": f"m{i}", "event": "e", "type": "count"} for i in range(MAX_METRICS + 1)
                ]
            },
            "metrics",
        ),
        ({"overrides": {f"u{i}": "control" for i in range(MAX_OVERRIDES + 1)}}, "overrides"),
        ({"version": MAX_VERSION + 1}, "version"),
        ({"traffic": float("nan")}, "traffic"),
        ({"traffic": float("inf")}, "traffic"),
        ({"layer": {"name": "l", "start": 0, "end": float("nan")}}, "layer.end"),
        (
            {
                "variants": [
                    {"key": "control", "weight": float("nan")},
                    {"key": "treatment", "weight": 50},
                ]
            },
            "variants.0.weight",
        ),
    ],
)
def test_experiment_sizes_counts_and_numbers_are_bounded(
    fields: dict[str, Any], field: str
) -> None:
    problems = _refused_fields(Experiment, _experiment(**fields))
    assert field in problems
    if field in ("variants", "metrics", "overrides"):
        assert "should have at most" in problems[field]


def test_a_targeting_rule_is_bounded_in_depth_conditions_values_and_numbers() -> None:
    deep: dict[str, Any] = CONDITION
    for _ in range(MAX_RULE_DEPTH):
        deep = {"not": deep}
    assert "targeting" in _refused_fields(Experiment, _experiment(targeting=deep))
    reason = _refused_fields(Experiment, _experiment(targeting=deep))["targeting"]
    assert f"deeper than {MAX_RULE_DEPTH}" in reason

    wide = {"any": [{"all": [CONDITION] * 200}, {"all": [CONDITION] * 200}]}
    reason = _refused_fields(Experiment, _experiment(targeting=wide))["targeting"]
    assert f"400 conditions; the limit is {MAX_RULE_CONDITIONS}" in reason

    many = {"attribute": "id", "op": "in", "values": list(range(MAX_RULE_VALUES + 1))}
    assert "targeting.values" in _refused_fields(Experiment, _experiment(targeting=many))

    long_value = {**CONDITION, "value": "x" * (MAX_NAME_CHARS + 1)}
    assert any(
        field.startswith("targeting.value")
        for field in _refused_fields(Experiment, _experiment(targeting=long_value))
    )
    not_a_number = {"attribute": "age", "op": "gt", "value": float("nan")}
    assert any(
        field.startswith("targeting.value")
        for field in _refused_fields(Experiment, _experiment(targeting=not_a_number))
    )

    # Right at the limits is accepted.
    limit: dict[str, Any] = CONDITION
    for _ in range(MAX_RULE_DEPTH - 1):
        limit = {"not": limit}
    Experiment.model_validate(_experiment(targeting=limit))


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"window_hours": 1e300}, "window_hours", "less than or equal to 8784"),
        ({"cuped_lookback_days": 1e300}, "cuped_lookback_days", "less than or equal to 366"),
        ({"window_hours": float("inf")}, "window_hours", "finite number"),
        ({"cap": {"value": float("nan")}}, "cap.value", "finite number"),
    ],
)
def test_metric_windows_and_lookbacks_are_at_most_a_year(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    metric = {"name": "m", "event": "e", "type": "sum", **fields}
    assert reason in _refused_fields(MetricDefinition, metric)[field]
    assert (
        reason in _refused_fields(Experiment, _experiment(metrics=[metric]))[f"metrics.0.{field}"]
    )


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 253, 254, 300])
def test_a_deep_flag_value_is_refused_at_the_model(depth: int) -> None:
    # 200-253 levels were once written and then skipped by every follower; 254 was a 500.
    flag = {"key": "f", "value_type": "json", "on_value": _nested(depth)}
    assert f"nested deeper than {MAX_JSON_DEPTH}" in _refused_fields(Flag, flag)["on_value"]


def test_flag_values_are_bounded_in_size_and_finite() -> None:
    huge = {"key": "f", "value_type": "json", "off_value": {"blob": "x" * MAX_FREE_FORM_BYTES}}
    assert f"the limit is {MAX_FREE_FORM_BYTES}" in _refused_fields(Flag, huge)["off_value"]
    nan = {"key": "f", "value_type": "json", "on_value": {"x": [1.0, float("nan")]}}
    assert "not a JSON number" in _refused_fields(Flag, nan)["on_value"]
    number = {"key": "f", "value_type": "number", "on_value": float("inf"), "off_value": 0}
    assert "on_value" in _refused_fields(Flag, number)
    deepest = _nested(MAX_JSON_DEPTH)
    flag = Flag.model_validate({"key": "f", "value_type": "json", "on_value": deepest})
    assert Flag.model_validate_json(flag.model_dump_json()) == flag


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"description": "d" * (MAX_TEXT_CHARS + 1)}, "description"),
        ({"owner": "o" * (MAX_NAME_CHARS + 1)}, "owner"),
        ({"seed": "s" * (MAX_NAME_CHARS + 1)}, "seed"),
        ({"overrides": {f"u{i}": "on" for i in range(MAX_OVERRIDES + 1)}}, "overrides"),
        ({"ramp": float("nan")}, "ramp"),
        ({"version": MAX_VERSION + 1}, "version"),
    ],
)
def test_flag_fields_are_bounded(fields: dict[str, Any], field: str) -> None:
    assert field in _refused_fields(Flag, {"key": "f", **fields})


def test_control_event_texts_are_bounded_and_a_bounded_event_reads_back() -> None:
    key = generate_key()
    issued = {
        "type": "api_key_issued",
        "tenant_id": "acme",
        "author": "operator",
        "key_id": key.key_id,
        "key_hash": key.key_hash,
        "role": "read",
    }
    for field, value in [
        ("label", "l" * 2_000_000),
        ("reason", "r" * (MAX_TEXT_CHARS + 1)),
        ("author", "a" * (MAX_NAME_CHARS + 1)),
    ]:
        with pytest.raises(ValidationError) as raised:
            ApiKeyIssued.model_validate({**issued, field: value})
        assert [p.field for p in field_errors(raised.value)] == [field]
    longest = ApiKeyIssued.model_validate(
        {**issued, "label": "l" * MAX_TEXT_CHARS, "reason": "r" * MAX_TEXT_CHARS}
    )
    assert parse_control_event(control_event_json(longest)) == longest


class _Log:
    def __init__(self) -> None:
        self.state = ControlState()
        self.offset = 0
        self.apply(TenantCreated(tenant_id="acme", author="operator"))

    def apply(self, event: Any) -> None:
        assert event is not None
        self.state.apply(self.offset, event)
        self.offset += 1


def _refusal(call: Any) -> Refused:
    with pytest.raises(Refused) as raised:
        call()
    return raised.value


def test_a_tenant_holds_a_bounded_number_of_definitions_and_keys() -> None:
    log = _Log()
    for index in range(MAX_DEFINITIONS_PER_TENANT):
        log.apply(
            commands.define_flag(
                log.state, ADMIN, Flag(key=f"f{index}"), create_only=True, reason=""
            )
        )
    refused = _refusal(
        lambda: commands.define_flag(
            log.state, ADMIN, Flag(key="one-more"), create_only=True, reason=""
        )
    )
    assert (refused.status, refused.problems[0].field) == (409, "flags")
    assert f"the limit is {MAX_DEFINITIONS_PER_TENANT}" in refused.problems[0].reason
    # A new version of an existing flag is not a new definition.
    log.apply(
        commands.define_flag(
            log.state, ADMIN, Flag(key="f0", version=2, ramp=5), create_only=False, reason=""
        )
    )

    issued = []
    for _ in range(MAX_ACTIVE_KEYS_PER_TENANT):
        event, _key = commands.issue_key(log.state, ADMIN, "read", "", "")
        log.apply(event)
        issued.append(event.key_id)
    refused = _refusal(lambda: commands.issue_key(log.state, ADMIN, "read", "", ""))
    assert (refused.status, refused.problems[0].field) == (409, "keys")
    log.apply(ApiKeyRevoked(tenant_id="acme", author="operator", key_id=issued[0]))
    event, _key = commands.issue_key(log.state, ADMIN, "read", "", "")  # room again
