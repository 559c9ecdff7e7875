"""The one rule that bounds a dead letter: cut texts say what was cut, keys are bounded,
and no letter, however hostile its parts, is larger than the broker takes."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from schemas.deadletter import DeadLetter, dead_letter_key, payload_excerpt
from schemas.errors import FieldError
from schemas.limits import (
    BROKER_MESSAGE_BYTES,
    DEAD_LETTER_PAYLOAD_CHARS,
    DEAD_LETTER_REASON_CHARS,
    FIELD_PATH_CHARS,
    FIELD_REASON_CHARS,
    MAX_DEAD_LETTER_BYTES,
    MAX_FIELD_ERRORS,
    MAX_RECORD_KEY_BYTES,
    clip,
    quote,
)

MIB = 1024 * 1024


def test_clip_keeps_short_text_and_says_how_long_a_cut_one_was() -> None:
    assert clip("short", 10) == "short"
    cut = clip("x" * 5000, 100)
    assert 90 <= len(cut) <= 100
    assert cut.startswith("x") and "truncated: 5000 characters" in cut
    assert clip(cut, 100) == cut  # clipping twice changes nothing


def test_quote_shows_the_start_and_length_of_a_long_value() -> None:
    assert quote("acme") == "'acme'"
    quoted = quote("m" * MIB)
    assert len(quoted) < 100 and str(MIB) in quoted
    assert quote(42) == "a int"


@pytest.mark.parametrize("character", ["m", "\x00", "\U0001f600"])
def test_a_letter_made_of_hostile_megabytes_fits_the_broker(character: str) -> None:
    # "\x00" is 6 bytes as JSON, the emoji 4: the worst cases of each cap.
    huge = character * MIB
    letter = DeadLetter(
        stage=huge,
        source_topic=huge,
        reason=huge,
        errors=[FieldError(field=huge, reason=huge) for _ in range(500)],
        payload=huge,
    )
    encoded = letter.encode()
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES < BROKER_MESSAGE_BYTES
    assert DEAD_LETTER_PAYLOAD_CHARS - 10 <= len(letter.payload) <= DEAD_LETTER_PAYLOAD_CHARS
    assert len(letter.reason) <= DEAD_LETTER_REASON_CHARS
    assert str(MIB) in letter.payload and "truncated" in letter.payload
    assert len(letter.errors) == MAX_FIELD_ERRORS
    assert all(len(e.field) <= FIELD_PATH_CHARS for e in letter.errors)
    assert all(len(e.reason) <= FIELD_REASON_CHARS for e in letter.errors)
    assert "481 more errors" in letter.errors[-1].reason
    # What the dead-letter readers parse back is the same letter.
    assert DeadLetter.model_validate_json(encoded) == letter


def test_a_letter_built_around_the_caps_loses_its_payload_not_its_place() -> None:
    unchecked = DeadLetter.model_construct(
        stage="collector",
        source_topic="t",
        source_partition=None,
        source_offset=None,
        reason="r",
        errors=[],
        payload="p" * (2 * MIB),
        failed_at=DeadLetter(stage="s", source_topic="t", reason="r", payload="").failed_at,
    )
    encoded = unchecked.encode()
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES
    assert "dropped" in orjson.loads(encoded)["payload"]


def test_short_keys_are_kept_and_long_ones_hashed_per_tenant() -> None:
    assert dead_letter_key(None) is None
    assert dead_letter_key(b"acme:u1") == b"acme:u1"
    valid_longest = b"t" * 64 + b":" + b"u" * 256
    assert len(valid_longest) == MAX_RECORD_KEY_BYTES
    assert dead_letter_key(valid_longest) == valid_longest
    unit = b"u" * MIB
    key = dead_letter_key(b"acme:" + unit)
    assert key == b"acme:sha256-" + hashlib.sha256(unit).hexdigest().encode()
    assert dead_letter_key(b"acme:" + unit) == key  # the same for every letter of that unit
    no_tenant = dead_letter_key(b"k" * MIB)
    assert no_tenant is not None and no_tenant.startswith(b"sha256-")
    assert len(no_tenant) <= MAX_RECORD_KEY_BYTES


def test_a_payload_nested_10000_deep_is_excerpted_without_recursion() -> None:
    deep: object = 1
    for _ in range(10_000):
        deep = [deep]
    excerpt = payload_excerpt({"properties": deep})
    assert excerpt.startswith('{"properties":[[[') and '"..."' in excerpt
    assert len(excerpt) < 200


def test_a_value_that_is_not_json_is_excerpted_by_its_repr() -> None:
    assert payload_excerpt({1, 2}) in {"{1, 2}", "{2, 1}"}
