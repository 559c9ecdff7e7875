"""The contracts refuse bad input with the field and the reason, and their JSON Schema is fresh."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import Experiment, ExposureEvent, OutcomeEvent, parse_event
from schemas.errors import describe, field_errors
from schemas.export import generated, stale_files


def _experiment(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "checkout-button",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "purchase_rate", "event": "purchase", "type": "conversion"}],
    }
    body.update(overrides)
    return body


def _error_text(error: ValidationError) -> str:
    return describe(field_errors(error))


def test_checked_in_json_schema_matches_the_models() -> None:
    assert stale_files() == [], "run `python -m schemas.export` and commit the result"


def test_json_schema_describes_required_event_fields() -> None:
    schema = json.loads(generated()["exposure_event.schema.json"])
    assert {"tenant_id", "unit_id", "timestamp", "experiment_key", "variant_key"} <= set(
        schema["required"]
    )


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        (
            {"variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 40}]},
            "variants",
            "sum to 100",
        ),
        (
            {"variants": [{"key": "a", "weight": 50}, {"key": "a", "weight": 50}]},
            "variants.1.key",
            "duplicate variant 'a'",
        ),
        (
            {"metrics": [{"name": "m", "event": "purchase", "type": "median"}]},
            "metrics.0.type",
            "'conversion', 'count', 'sum', 'mean' or 'ratio'",
        ),
        ({"control": "nope"}, "control", "not one of the variants"),
        ({"traffic": 120}, "traffic", "less than or equal to 100"),
    ],
)
def test_invalid_experiment_names_field_and_reason(
    overrides: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Experiment.model_validate(_experiment(**overrides))
    text = _error_text(caught.value)
    assert field in text
    assert reason in text


def test_valid_experiment_defaults_control_to_first_variant() -> None:
    experiment = Experiment.model_validate(_experiment())
    assert experiment.control_key == "control"
    assert experiment.treatment_keys == ["treatment"]
    assert experiment.hash_seed == "checkout-button"


def test_event_round_trips_through_json_and_normalises_to_utc() -> None:
    event = OutcomeEvent(
        tenant_id="acme",
        unit_id="u-1",
        timestamp="2026-03-01T12:00:00+02:00",
        event="purchase",
        value=12.5,
    )
    parsed = parse_event(event.to_json())
    assert parsed == event
    assert parsed.timestamp.isoformat() == "2026-03-01T10:00:00+00:00"
    assert event.partition_key == b"acme:u-1"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"type": "exposure", "tenant_id": "acme", "unit_id": "u"}', "timestamp"),
        (
            '{"type": "outcome", "tenant_id": "acme", "unit_id": "u", '
            '"timestamp": "2026-01-01T00:00:00Z", "event": "x", "value": "lots"}',
            "value",
        ),
        (
            '{"type": "exposure", "tenant_id": "acme", "unit_id": "u", '
            '"timestamp": "2026-01-01T00:00:00", "experiment_key": "e", "variant_key": "a"}',
            "timestamp",
        ),
        ('{"type": "click", "tenant_id": "acme"}', "type"),
        ("not json", ""),
    ],
)
def test_malformed_event_is_refused_naming_the_field(payload: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(payload)
    fields = [error.field for error in field_errors(caught.value)]
    assert any(f.endswith(field) for f in fields), fields


def test_non_finite_outcome_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        OutcomeEvent(
            tenant_id="acme", unit_id="u", timestamp="2026-01-01T00:00:00Z", event="x", value="nan"
        )


def test_exposure_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ExposureEvent.model_validate(
            {
                "tenant_id": "acme",
                "unit_id": "u",
                "timestamp": "2026-01-01T00:00:00Z",
                "experiment_key": "e",
                "variant_key": "a",
                "varient": "typo",
            }
        )
