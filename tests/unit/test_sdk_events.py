"""The SDK's msgspec validation of ``track``/``expose`` agrees with the pydantic contract:
whatever the fast path accepts, pydantic accepts with the same values, so the client
(which lets pydantic decide the rest) accepts and refuses exactly what the contract does."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError
from liftstream.events import fast_exposure, fast_outcome, new_event_id
from schemas.events import ExposureEvent, OutcomeEvent
from tests.unit.fake_producer import RecordingProducer

WHEN = datetime(2024, 5, 1, 12, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["x" * 5000])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
deep: dict[str, Any] = {"a": 1}
for _ in range(20):
    deep = {"a": [deep]}
unit_ids = (
    st.text(max_size=4)
    | st.sampled_from(["u" * 256, "u" * 257, ""])
    | st.integers(0, 3)
    | st.none()
)
event_names = st.sampled_from(
    ["purchase", "page.view", "a:b", "-bad", "", "x y", "a\n", "É"]
) | st.integers(0, 2)
values = (
    st.floats()
    | st.integers(-(2**60), 2**60)
    | st.sampled_from(
        [True, False, "2.5", None, 10**400, 2**53 + 1, 1.5, 1e15, -1e15, 1.0000001e15]
    )
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
timestamps = (
    st.none()
    | st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones)
    | st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))
    | st.sampled_from(["2024-05-01T12:00:00Z", 1714564800])
)
free_forms = (
    st.none()
    | st.dictionaries(st.text(max_size=4), json_values, max_size=4)
    | st.sampled_from([deep, {1: "a"}, {"k": object()}, {"k" * 300: 1}, {"k": float("nan")}, []])
)
attribute_maps = (
    st.none()
    | st.dictionaries(st.text(max_size=4), json_scalars, max_size=4)
    | st.sampled_from([{"plan": ["a"]}, {1: "a"}, {"k": 10**30}, {"k": b"x"}])
)


def _same(fast: Any, model: OutcomeEvent | ExposureEvent, fields: tuple[str, ...]) -> None:
    for name in fields:
        got, want = getattr(fast, name), getattr(model, name)
        assert got == want and type(got) is type(want), (name, got, want)


@settings(max_examples=1500, deadline=None)
@given(unit=unit_ids, event=event_names, value=values, properties=free_forms, when=timestamps)
def test_fast_outcomes_are_what_pydantic_makes_of_the_same_call(
    unit: Any, event: Any, value: Any, properties: Any, when: Any
) -> None:
    fast = fast_outcome("acme", unit, event, value, properties, when)
    try:
        model = OutcomeEvent(
            tenant_id="acme",
            unit_id=unit,
            timestamp=when if when is not None else WHEN,
            event=event,
            value=value,
            properties=properties if isinstance(properties, list) else dict(properties or {}),
        )
    except (ValidationError, TypeError, ValueError):
        assert fast is None, (unit, event, value, properties, when)
        return
    if fast is None:
        return  # pydantic decides (the client falls back to it)
    _same(fast, model, ("tenant_id", "unit_id", "event", "value", "properties"))
    if when is not None:
        _same(fast, model, ("timestamp",))
        assert fast.timestamp.tzinfo is UTC
    assert math.isfinite(fast.value)
    assert OutcomeEvent.model_validate_json(fast.to_json()).model_dump(exclude={"event_id"}) == (
        model.model_copy(update={"timestamp": fast.timestamp}).model_dump(exclude={"event_id"})
    )


@settings(max_examples=800, deadline=None)
@given(
    unit=unit_ids,
    experiment=st.sampled_from(["checkout", "Checkout", "a.b-c_d", ""]),
    variant=st.sampled_from(["control", "x y", "t"]),
    version=st.sampled_from([1, 2, 0, 1_000_000, 1_000_001]),
    attributes=attribute_maps,
    when=timestamps,
)
def test_fast_exposures_are_what_pydantic_makes_of_the_same_call(
    unit: Any, experiment: str, variant: str, version: int, attributes: Any, when: Any
) -> None:
    fast = fast_exposure("acme", unit, experiment, variant, version, attributes, when)
    try:
        model = ExposureEvent(
            tenant_id="acme",
            unit_id=unit,
            timestamp=when if when is not None else WHEN,
            experiment_key=experiment,
            variant_key=variant,
            experiment_version=version,
            attributes=dict(attributes or {}),
        )
    except (ValidationError, TypeError, ValueError):
        assert fast is None, (unit, experiment, variant, version, attributes, when)
        return
    if fast is None:
        return
    fields = ("unit_id", "experiment_key", "variant_key", "experiment_version", "attributes")
    _same(fast, model, fields)
    if when is not None:
        _same(fast, model, ("timestamp",))


@settings(max_examples=300, deadline=None)
@given(unit=unit_ids, event=event_names, value=values, properties=free_forms, when=timestamps)
def test_the_client_accepts_exactly_what_the_contract_accepts(
    unit: Any, event: Any, value: Any, properties: Any, when: Any
) -> None:
    client = LiftstreamClient("acme", bootstrap="unused:9092", producer=RecordingProducer())
    try:
        try:
            OutcomeEvent(
                tenant_id="acme",
                unit_id=unit,
                timestamp=when or WHEN,
                event=event,
                value=value,
                properties=dict(properties or {}),
            )
            valid = True
        except (ValidationError, TypeError, ValueError):
            valid = False
        if valid:
            sent = client.track(unit, event, value, properties, when)
            assert sent.to_model().event == event
        else:
            with pytest.raises((InvalidInputError, TypeError, ValueError)):
                client.track(unit, event, value, properties, when)
    finally:
        client.close()


def test_event_ids_are_unique_version_4_uuids() -> None:
    import uuid

    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids[:100]]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(str(u) == i for u, i in zip(parsed, ids[:100], strict=True))


def test_ordinary_calls_take_the_fast_path() -> None:
    local = datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    outcome = fast_outcome("acme", "user-1", "purchase", 3, {"sku": "A", "n": [1, 2]}, local)
    assert outcome is not None
    assert (outcome.value, outcome.timestamp) == (3.0, WHEN)
    assert fast_outcome("acme", "user-1", "page.view", 1.0, None, None) is not None
    exposure = fast_exposure("acme", "user-1", "checkout", "control", 2, {"plan": "pro"}, None)
    assert exposure is not None and exposure.attributes == {"plan": "pro"}
