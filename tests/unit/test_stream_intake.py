"""Messages from the event topics become events, or dead letters naming the field."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent, OutcomeEvent, parse_event
from schemas.limits import MAX_OUTCOME_VALUE
from schemas.partitioning import partition_for
from services.stream.intake import (
    SourceMessage,
    StreamEvent,
    _fast_decode,
    _from_model,
    decode_event,
    decode_events,
    decode_message,
)

WHEN = datetime(2024, 3, 1, 12, tzinfo=UTC)
PARTITIONS = 4


def message(
    value: bytes | None, key: bytes | None = b"acme:u1", topic: str = "t.outcomes"
) -> SourceMessage:
    return SourceMessage(topic=topic, partition=2, offset=41, key=key, value=value)


def outcome_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = json.loads(
        OutcomeEvent(tenant_id="acme", unit_id="u1", timestamp=WHEN, event="purchase").to_json()
    )
    body.update(overrides)
    return body


def dead_letter(value: bytes | None, **kwargs: object) -> DeadLetter:
    result = decode_event(message(value, **kwargs), "outcome")  # type: ignore[arg-type]
    assert isinstance(result, DeadLetter), result
    return result


def test_valid_outcome_is_accepted() -> None:
    body = outcome_body(value=2.5)
    result = decode_event(message(json.dumps(body).encode()), "outcome")
    assert isinstance(result, StreamEvent)
    assert (result.type, result.event, result.value) == ("outcome", "purchase", 2.5)
    assert result.event_id == uuid.UUID(str(body["event_id"])).int
    assert result.timestamp_us == int(WHEN.timestamp()) * 1_000_000


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=5,
)
field_values = {
    "type": st.sampled_from(["exposure", "outcome", "other", 1]),
    "event_id": st.uuids().map(str)
    | st.sampled_from(["", "not-a-uuid", "{12345678-1234-5678-1234-567812345678}"])
    | json_values,
    "tenant_id": st.sampled_from(["acme", "Acme", "-x", "a" * 64, "a" * 65, ""]) | json_values,
    "unit_id": st.text(max_size=4) | st.just("u" * 257) | json_values,
    "timestamp": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.sampled_from(
        [
            "2024-03-01T12:00:00Z",
            "2024-03-01T12:00:00",
            "2024-03-01T12:00:00.1234567Z",
            "2024-13-01T00:00:00Z",
            "1709294400",
        ]
    )
    | json_values,
    "received_at": st.none() | st.sampled_from(["2024-03-01T12:00:00Z", "yesterday"]),
    "schema_version": st.sampled_from([1, 2, True, "1", 1.0]),
    "experiment_key": st.sampled_from(["checkout", "Checkout", "a.b-c_d", ""]) | json_values,
    "variant_key": st.sampled_from(["control", "treatment", "x y"]) | json_values,
    "experiment_version": st.sampled_from([1, 2, 0, -1, True, "2", 1.5]),
    "attributes": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "event": st.sampled_from(["purchase", "page.view", "a:b", "-bad", ""]) | json_values,
    "value": st.floats() | st.integers(-(10**20), 10**20) | st.sampled_from([True, "2.5", None]),
    "properties": json_values,
}


@settings(max_examples=1000, deadline=None)
@given(
    present=st.sets(st.sampled_from(sorted(field_values))),
    data=st.data(),
)
def test_fast_path_agrees_with_the_contract(present: set[str], data: st.DataObject) -> None:
    """Whatever the fast path accepts, pydantic accepts with the same values."""
    body = {name: data.draw(field_values[name], label=name) for name in sorted(present)}
    try:
        payload = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):
        return
    fast = _fast_decode(payload)
    try:
        expected = _from_model(parse_event(payload))
    except ValidationError:
        assert fast is None, body
        return
    assert fast is None or fast == expected, body


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["exposure", "outcome"]),
    moment=st.datetimes(timezones=st.timezones(), min_value=datetime(1971, 1, 1)),
    value=st.floats(min_value=-MAX_OUTCOME_VALUE, max_value=MAX_OUTCOME_VALUE)
    | st.integers(-(10**6), 10**6),
)
def test_events_the_sdk_writes_take_the_fast_path(
    kind: str, moment: datetime, value: float
) -> None:
    common = {"tenant_id": "acme", "unit_id": "u1", "timestamp": moment}
    event = (
        ExposureEvent(
            **common,
            experiment_key="checkout",
            variant_key="control",
            attributes={"country": "de", "age": 3, "beta": True},
        )
        if kind == "exposure"
        else OutcomeEvent(**common, event="purchase", value=value)
    )
    fast = _fast_decode(event.to_json())
    assert fast is not None and fast == _from_model(event)


def test_bad_json_is_refused_with_its_payload_and_position() -> None:
    refused = dead_letter(b'{"tenant_id": "acme",')
    assert refused.stage == "stream"
    assert (refused.source_topic, refused.source_partition, refused.source_offset) == (
        "t.outcomes",
        2,
        41,
    )
    assert "Invalid JSON" in refused.reason
    assert refused.payload == '{"tenant_id": "acme",'


def test_undecodable_bytes_are_kept_with_replacement_characters() -> None:
    refused = dead_letter(b"\xff\xfe not json")
    assert refused.payload.startswith("\ufffd\ufffd")


def test_a_json_array_is_refused_as_not_an_object() -> None:
    assert "object" in dead_letter(b"[1, 2]").reason


def test_missing_field_is_named() -> None:
    body = outcome_body()
    del body["event"]
    refused = dead_letter(json.dumps(body).encode())
    assert [error.field for error in refused.errors] == ["event"]
    assert refused.reason.startswith("event:")


def test_wrong_type_is_named_without_the_union_tag() -> None:
    refused = dead_letter(json.dumps(outcome_body(value="a lot")).encode())
    assert [error.field for error in refused.errors] == ["value"]
    assert "number" in refused.reason


def test_unknown_event_type_is_named() -> None:
    refused = dead_letter(json.dumps(outcome_body(type="impression")).encode())
    assert [error.field for error in refused.errors] == ["type"]


def test_exposure_on_the_outcomes_topic_is_refused() -> None:
    exposure = ExposureEvent(
        tenant_id="acme", unit_id="u1", timestamp=WHEN, experiment_key="e", variant_key="a"
    )
    refused = dead_letter(exposure.to_json())
    assert refused.errors[0].field == "type"
    assert "outcomes topic" in refused.reason


@pytest.mark.parametrize("key", [b"other:u1", b"acme:u2", None])
def test_key_that_is_not_tenant_and_unit_is_refused(key: bytes | None) -> None:
    refused = dead_letter(json.dumps(outcome_body()).encode(), key=key)
    assert refused.errors[0].field == "key"
    assert "acme:u1" in refused.reason


def test_empty_message_is_refused() -> None:
    assert "empty" in dead_letter(None).reason


def test_reason_is_one_line() -> None:
    body = outcome_body(value="x", timestamp="yesterday")
    del body["unit_id"]
    refused = dead_letter(json.dumps(body).encode())
    assert "\n" not in refused.reason
    assert {"value", "timestamp", "unit_id"} <= {error.field for error in refused.errors}


def outcome_payload(unit: str, **overrides: object) -> bytes:
    body = outcome_body(unit_id=unit, **overrides)
    return json.dumps(body).encode()


#: Values that, decoded side by side as one JSON array, could fall out of step with their
#: messages: none, empty, two objects in one value, and pieces of an array that only
#: parse joined (an array opened in one value and closed in the next).
TWO_IN_ONE = outcome_payload("u1") + b"," + outcome_payload("u1", value=2.0)
ARRAY_OPENED = outcome_payload("u1")[:-1] + b',"properties":{"k":[{}'
ARRAY_CLOSED = b'{"a":1}]}}'
awkward_values = st.sampled_from(
    [
        None,
        b"",
        b" ",
        TWO_IN_ONE,
        ARRAY_OPENED,
        ARRAY_CLOSED,
        outcome_payload("u1", properties={"list": [1, 2]}),
        b'{"tenant_id": "acme",',
        b"[]",
    ]
)


@settings(max_examples=300, deadline=None)
# Joined, these three make three valid events, none of them what its message holds.
@example(values=[ARRAY_OPENED, ARRAY_CLOSED, TWO_IN_ONE])
@given(
    values=st.lists(
        st.sampled_from([outcome_payload("u1"), outcome_payload("u1", value=3.5)]) | awkward_values,
        min_size=1,
        max_size=12,
    )
)
def test_decoding_messages_together_agrees_with_one_at_a_time(values: list[bytes | None]) -> None:
    messages = [
        SourceMessage(topic="t.outcomes", partition=0, offset=i, key=b"acme:u1", value=value)
        for i, value in enumerate(values)
    ]
    together, origins = decode_events(messages, "outcome", PARTITIONS)
    one_at_a_time = [decode_message(m, "outcome", PARTITIONS) for m in messages]
    assert [comparable(result) for result in together] == [
        comparable(result) for results in one_at_a_time for result in results
    ]
    assert origins == [index for index, results in enumerate(one_at_a_time) for _ in results]


def comparable(result: StreamEvent | DeadLetter) -> object:
    return result.model_dump(exclude={"failed_at"}) if isinstance(result, DeadLetter) else result


# Batches: a JSON array of events of the message's partition.


def units_of_partition(partition: int, count: int) -> list[str]:
    units = (f"u{n}" for n in range(10_000))
    return [u for u in units if partition_for(f"acme:{u}".encode(), PARTITIONS) == partition][
        :count
    ]


def batch_message(elements: list[bytes], partition: int, key: bytes | None = None) -> SourceMessage:
    value = b"[" + b",".join(elements) + b"]"
    return SourceMessage(topic="t.outcomes", partition=partition, offset=7, key=key, value=value)


def single_message(element: bytes, unit: str, partition: int) -> SourceMessage:
    key = f"acme:{unit}".encode()
    return SourceMessage(topic="t.outcomes", partition=partition, offset=7, key=key, value=element)


def test_a_batch_yields_its_events_in_order_whatever_its_key() -> None:
    units = units_of_partition(1, 5)
    elements = [outcome_payload(u, value=float(i)) for i, u in enumerate(units)]
    for key in (None, b"anything"):
        results = decode_message(batch_message(elements, 1, key), "outcome", PARTITIONS)
        assert all(isinstance(r, StreamEvent) for r in results)
        assert [(r.key, r.value) for r in results] == [  # type: ignore[union-attr]
            (f"acme:{u}".encode(), float(i)) for i, u in enumerate(units)
        ]


def test_a_bad_element_is_its_own_dead_letter_and_the_rest_is_accepted() -> None:
    units = units_of_partition(3, 4)
    elements = [outcome_payload(u) for u in units]
    elements[2] = outcome_payload(units[2], value="a lot")
    results = decode_message(batch_message(elements, 3), "outcome", PARTITIONS)
    assert [type(r).__name__ for r in results] == [
        "StreamEvent",
        "StreamEvent",
        "DeadLetter",
        "StreamEvent",
    ]
    letter = results[2]
    assert isinstance(letter, DeadLetter)
    assert letter.batch_index == 2
    assert [error.field for error in letter.errors] == ["value"]
    assert letter.reason.startswith("batch element 2: value:")
    assert json.loads(letter.payload) == json.loads(elements[2])
    assert (letter.source_partition, letter.source_offset) == (3, 7)


def test_an_element_of_another_partition_or_type_is_refused_by_name() -> None:
    home = units_of_partition(0, 1)[0]
    stranger = units_of_partition(2, 1)[0]
    exposure = ExposureEvent(
        tenant_id="acme", unit_id=home, timestamp=WHEN, experiment_key="e", variant_key="a"
    ).to_json()
    elements = [outcome_payload(home), outcome_payload(stranger), exposure]
    results = decode_message(batch_message(elements, 0), "outcome", PARTITIONS)
    assert isinstance(results[0], StreamEvent)
    moved, wrong_type = results[1], results[2]
    assert isinstance(moved, DeadLetter) and isinstance(wrong_type, DeadLetter)
    assert (moved.batch_index, moved.errors[0].field) == (1, "key")
    assert "belongs to partition 2 of 4, not 0" in moved.reason
    assert (wrong_type.batch_index, wrong_type.errors[0].field) == (2, "type")


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"[", "Invalid JSON"), (b"[]", "1 to"), (b' [{"a": 1},', "Invalid JSON")],
)
def test_a_batch_that_is_not_a_json_array_of_events_is_refused_whole(
    value: bytes, reason: str
) -> None:
    message = SourceMessage(topic="t.outcomes", partition=0, offset=7, key=None, value=value)
    results = decode_message(message, "outcome", PARTITIONS)
    assert len(results) == 1 and isinstance(results[0], DeadLetter)
    assert results[0].batch_index is None
    assert reason in results[0].reason


@settings(max_examples=200, deadline=None)
@given(
    choices=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(["ok", "bad_value", "naive", "bad_tenant"])),
        min_size=1,
        max_size=8,
    )
)
def test_a_batch_decodes_like_its_elements_sent_one_by_one(
    choices: list[tuple[int, str]],
) -> None:
    units = units_of_partition(1, 8)
    overrides: dict[str, dict[str, object]] = {
        "ok": {},
        "bad_value": {"value": "x"},
        "naive": {"timestamp": "2024-03-01T12:00:00"},
        "bad_tenant": {"tenant_id": "Acme"},
    }
    elements = [outcome_payload(units[n], **overrides[kind]) for n, kind in choices]
    batched = decode_message(batch_message(elements, 1), "outcome", PARTITIONS)
    for index, (element, (n, _)) in enumerate(zip(elements, choices, strict=True)):
        alone = decode_event(single_message(element, units[n], 1), "outcome")
        got = batched[index]
        if isinstance(alone, StreamEvent):
            assert got == alone
        else:
            assert isinstance(got, DeadLetter) and got.batch_index == index
            assert got.errors == alone.errors


@pytest.mark.parametrize(
    "properties",
    [
        {"k": json.loads("[" * 17 + "1" + "]" * 17)},
        {f"p{i}": i for i in range(101)},
        {"k": "x" * 2000},
    ],
    ids=["deeper-than-16", "101-keys", "2000-char-string"],
)
def test_properties_over_the_limits_are_refused_as_the_contract_refuses_them(
    properties: dict[str, object],
) -> None:
    payload = json.dumps(outcome_body(properties=properties)).encode()
    with pytest.raises(ValidationError):
        parse_event(payload)  # the results loader's verdict
    letter = dead_letter(payload)
    assert letter.errors and letter.errors[0].field.startswith("properties")


def test_properties_within_the_limits_take_the_fast_path() -> None:
    payload = json.dumps(outcome_body(properties={"plan": "pro", "items": [1, 2]})).encode()
    assert isinstance(_fast_decode(payload), StreamEvent)
