"""Errors the SDK and CLI raise for bad input, each naming the field and the reason.

Pydantic's errors are turned into ``field.path: reason`` lines a person can act on:
model-level checks that already name their field (``variants.1.key: duplicate variant
'b'``) keep that path, and the offending value is shown where it helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.deadletter import FieldError
from schemas.identifiers import EventName, Key, TenantId

#: Tagged unions (``schemas.targeting.Rule``) put their tag in error locations; not a field.
_TAG_PREFIX = "rule:"
_SHOW_INPUT_FOR = {"string_pattern_mismatch", "enum", "literal_error", "string_too_long"}
_MAX_SHOWN_INPUT = 60


def _pattern_of(annotated: object) -> str:
    return str(annotated.__metadata__[0].pattern)  # type: ignore[attr-defined]


# The identifier patterns, said in words.
_PATTERN_WORDS = {
    _pattern_of(Key): "should be lower-case letters, digits, '_', '.' or '-', "
    "starting with a letter or digit (at most 100 characters)",
    _pattern_of(TenantId): "should be lower-case letters, digits, '_' or '-', "
    "starting with a letter or digit (at most 64 characters)",
    _pattern_of(EventName): "should be letters, digits, '_', '.', ':' or '-', "
    "starting with a letter or digit (at most 128 characters)",
}


class InvalidInputError(ValueError):
    """Input that does not fit a contract; ``problems`` lists each field and reason."""

    def __init__(self, subject: str, problems: list[FieldError]) -> None:
        self.subject = subject
        self.problems = problems
        lines = "\n".join(
            f"  {p.field}: {p.reason}" if p.field else f"  {p.reason}" for p in problems
        )
        super().__init__(f"{subject}:\n{lines}")

    @classmethod
    def from_validation(cls, subject: str, error: ValidationError) -> InvalidInputError:
        return cls(subject, field_problems(error))


def field_problems(error: ValidationError) -> list[FieldError]:
    """Each error of ``error`` as (dotted field path, reason)."""
    return problems_from_details(error.errors(include_url=False))


def problems_from_details(
    details: Sequence[Any], drop_prefix: tuple[str, ...] = ()
) -> list[FieldError]:
    """Pydantic error details (also FastAPI's) as (dotted field path, reason).

    ``drop_prefix`` removes leading location parts such as FastAPI's ``body``.
    """
    problems = []
    for item in details:
        location = list(item["loc"])
        if drop_prefix and tuple(location[: len(drop_prefix)]) == drop_prefix:
            location = location[len(drop_prefix) :]
        path = ".".join(str(part) for part in location if not str(part).startswith(_TAG_PREFIX))
        reason = _reason(item)
        if item["type"] == "value_error":
            # A model-level check that names its field itself: "variants: weights sum ...".
            named_field, separator, rest = reason.partition(": ")
            if separator and named_field and " " not in named_field:
                path, reason = f"{path}.{named_field}" if path else named_field, rest
        problems.append(FieldError(field=path, reason=reason))
    return problems


def _reason(item: ErrorDetails) -> str:
    kind = item["type"]
    context = item.get("ctx") or {}
    if kind == "value_error" and "error" in context:
        return str(context["error"])
    if kind == "extra_forbidden":
        return "unknown field"
    reason = str(item["msg"])
    if kind == "string_pattern_mismatch" and context.get("pattern") in _PATTERN_WORDS:
        reason = _PATTERN_WORDS[context["pattern"]]
    shown = item.get("input")
    if kind in _SHOW_INPUT_FOR and isinstance(shown, str | int | float):
        text = repr(shown)
        if len(text) > _MAX_SHOWN_INPUT:
            text = text[:_MAX_SHOWN_INPUT] + "…"
        reason = f"{reason} (got {text})"
    return reason


class PlatformUnavailableError(RuntimeError):
    """No platform to talk to: no broker configured or reachable, no results service."""


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge events the SDK accepted; they were not stored."""
