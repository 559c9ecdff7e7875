"""Dead letters: a message the platform refused, with the reason and the payload as sent.

Nothing is silently dropped: whoever refuses a message (stream worker, collector)
writes one of these to the dead-letter topic, keyed like the original message.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

_DISCRIMINATOR_ERRORS = {"union_tag_invalid", "union_tag_not_found"}


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="Dotted path of the offending field; '' for the whole body.")
    reason: str


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field(description="Who refused it: 'stream', 'collector', ...")
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    reason: str = Field(description="One line a person can act on.")
    errors: list[FieldError] = Field(default_factory=list)
    payload: str = Field(description="The message as received (undecodable bytes replaced).")
    failed_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))


def field_errors(error: ValidationError) -> list[FieldError]:
    """Flatten a pydantic error into (field path, reason) pairs."""
    errors = []
    for item in error.errors(include_url=False):
        path = [str(part) for part in item["loc"]]
        if item["type"] in _DISCRIMINATOR_ERRORS:
            # A bad or missing ``type`` tag is reported at the union, not at the tag field.
            path.append(str(item.get("ctx", {}).get("discriminator", "type")).strip("'"))
        errors.append(FieldError(field=".".join(path), reason=item["msg"]))
    return errors


def describe(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field or '<body>'}: {e.reason}" for e in errors)
