"""Dead letters: a message the platform refused, with the reason and the payload as sent.

Nothing is silently dropped: whoever refuses a message (stream worker, collector)
writes one of these to the dead-letter topic, keyed like the original message.

One rule bounds every dead letter, whoever writes it, so that a refused message can never
be one the broker refuses in turn (which once wedged the collector's producers for every
tenant): the model cuts the payload excerpt, the reason and each field error to the
limits of ``schemas.limits`` (saying what was cut and the original length) and keeps at
most ``MAX_FIELD_ERRORS`` errors; ``encode`` serialises a letter and checks it is at most
``MAX_DEAD_LETTER_BYTES``; ``dead_letter_key`` bounds the key. Writers use ``encode`` and
``dead_letter_key``, never ``model_dump_json`` and a raw key. A letter's errors are
``schemas.errors.FieldError``s (re-exported here for older imports).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from schemas.errors import FieldError
from schemas.identifiers import TenantId
from schemas.limits import (
    DEAD_LETTER_PAYLOAD_CHARS,
    DEAD_LETTER_REASON_CHARS,
    MAX_DEAD_LETTER_BYTES,
    MAX_FIELD_ERRORS,
    MAX_JSON_DEPTH,
    MAX_NAME_CHARS,
    MAX_RECORD_KEY_BYTES,
    MAX_TENANT_ID_CHARS,
    clip,
    clipped,
)

__all__ = [
    "DeadLetter",
    "FieldError",
    "bounded_errors",
    "dead_letter_key",
    "payload_excerpt",
]


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Annotated[str, clipped(MAX_NAME_CHARS)] = Field(
        description="Who refused it: 'stream', 'collector', ..."
    )
    source_topic: Annotated[str, clipped(MAX_NAME_CHARS)]
    tenant_id: TenantId | None = Field(
        default=None,
        description="The tenant the refused message belongs to, when known for sure "
        "(the collector: the API key's tenant).",
    )
    source_partition: int | None = None
    source_offset: int | None = None
    batch_index: int | None = Field(
        default=None,
        description="Position (from 0) of the refused event in a batch message; "
        "null when the whole message was refused.",
    )
    reason: Annotated[str, clipped(DEAD_LETTER_REASON_CHARS)] = Field(
        description="One line a person can act on."
    )
    errors: list[FieldError] = Field(default_factory=list)
    payload: Annotated[str, clipped(DEAD_LETTER_PAYLOAD_CHARS)] = Field(
        description="The message as received (undecodable bytes replaced), cut to "
        f"{DEAD_LETTER_PAYLOAD_CHARS} characters saying how long it was."
    )
    failed_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("errors")
    @classmethod
    def _at_most_some_errors(cls, errors: list[FieldError]) -> list[FieldError]:
        return bounded_errors(errors)

    def encode(self) -> bytes:
        """The letter as JSON, at most ``MAX_DEAD_LETTER_BYTES`` (the model's caps keep it
        well under; a letter built around them loses its payload and errors, not its
        place on the topic)."""
        value = self.model_dump_json().encode()
        if len(value) <= MAX_DEAD_LETTER_BYTES:
            return value
        cut = self.model_copy(
            update={
                "payload": f"[dropped: the letter was {len(value)} bytes as JSON]",
                "errors": [],
                "reason": clip(self.reason, DEAD_LETTER_REASON_CHARS),
                "stage": clip(self.stage, MAX_NAME_CHARS),
                "source_topic": clip(self.source_topic, MAX_NAME_CHARS),
            }
        )
        return cut.model_dump_json().encode()


def bounded_errors(errors: list[FieldError]) -> list[FieldError]:
    """At most ``MAX_FIELD_ERRORS``: the first ones, then one that counts the rest."""
    if len(errors) <= MAX_FIELD_ERRORS:
        return errors
    rest = len(errors) - (MAX_FIELD_ERRORS - 1)
    return [
        *errors[: MAX_FIELD_ERRORS - 1],
        FieldError(field="", reason=f"... and {rest} more errors (not listed)"),
    ]


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key of a dead letter: the original key if it is at most
    ``MAX_RECORD_KEY_BYTES``, else ``tenant:sha256-<hex of the rest>`` (or
    ``sha256-<hex>`` when it has no short tenant prefix): bounded, and the same for
    every letter of that key."""
    if key is None or len(key) <= MAX_RECORD_KEY_BYTES:
        return key
    head, colon, rest = key.partition(b":")
    if colon and 0 < len(head) <= MAX_TENANT_ID_CHARS:
        return head + b":sha256-" + hashlib.sha256(rest).hexdigest().encode()
    return b"sha256-" + hashlib.sha256(key).hexdigest().encode()


def payload_excerpt(value: Any) -> str:
    """A parsed JSON value as compact JSON, for a letter's payload: a value nested deeper
    than ``MAX_JSON_DEPTH`` shows its first levels (deeper ones as ``"..."``), and anything
    not JSON its ``repr`` (the model then cuts it to its limit)."""
    shallow = _shallow(value, MAX_JSON_DEPTH + 1)
    try:
        return orjson.dumps(shallow).decode()
    except (TypeError, orjson.JSONEncodeError):
        return clip(repr(shallow), DEAD_LETTER_PAYLOAD_CHARS)


def _shallow(value: Any, levels: int) -> Any:
    # Recursion bounded by ``levels``, whatever the depth of ``value``.
    if not isinstance(value, dict | list):
        return value
    if levels <= 0:
        return "..."
    if isinstance(value, dict):
        return {key: _shallow(child, levels - 1) for key, child in value.items()}
    return [_shallow(child, levels - 1) for child in value]
