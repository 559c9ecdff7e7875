"""Errors named by field: ``FieldError`` and the one flattener of pydantic's errors.

Everything that refuses input says so the same way, whoever refuses it: the SDK
(``liftstream.errors.InvalidInputError``), the collector (per-event errors and dead
letters), the stream worker (dead letters), the control and results services (422
bodies). ``field_errors`` turns a pydantic ``ValidationError`` (or FastAPI's error
details) into ``FieldError(field, reason)`` lines a person can act on:

- the field is the dotted location, without the tags pydantic puts in locations of tagged
  unions (``rule:<kind>`` of targeting rules; an event's ``exposure``/``outcome`` when
  ``union_tags`` names them), without ``drop_prefix`` (FastAPI's ``body``); a missing or
  unknown union tag is reported at the tag's field (``type``);
- model-level checks that name their field themselves (``variants: weights sum ...``)
  keep that path;
- identifier patterns are said in words, an unknown field is "unknown field", and the
  offending value is shown where it helps (cut to 60 characters).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from schemas.identifiers import EventName, Key, TenantId
from schemas.limits import FIELD_PATH_CHARS, FIELD_REASON_CHARS, clipped

__all__ = ["FieldError", "describe", "field_errors"]


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Annotated[str, clipped(FIELD_PATH_CHARS)] = Field(
        description="Dotted path of the offending field; '' for the whole body."
    )
    reason: Annotated[str, clipped(FIELD_REASON_CHARS)]


#: Tagged unions (``schemas.targeting.Rule``) put their tag in error locations; not a field.
_TAG_PREFIX = "rule:"
_DISCRIMINATOR_ERRORS = {"union_tag_invalid", "union_tag_not_found"}
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


def field_errors(
    error: ValidationError | Sequence[Any],
    *,
    drop_prefix: tuple[str, ...] = (),
    union_tags: Collection[str] = (),
) -> list[FieldError]:
    """Each error of ``error`` (or of pydantic/FastAPI error details) as (dotted field
    path, reason); see the module docstring."""
    details = error.errors(include_url=False) if isinstance(error, ValidationError) else error
    problems = []
    for item in details:
        location = list(item["loc"])
        if drop_prefix and tuple(location[: len(drop_prefix)]) == drop_prefix:
            location = location[len(drop_prefix) :]
        parts = [
            str(part)
            for index, part in enumerate(location)
            if not str(part).startswith(_TAG_PREFIX)
            and not (part in union_tags and (index == 0 or isinstance(location[index - 1], int)))
        ]
        if item["type"] in _DISCRIMINATOR_ERRORS:
            # A bad or missing tag is reported at the tag's field, not at the union.
            parts.append(str((item.get("ctx") or {}).get("discriminator", "type")).strip("'"))
        path = ".".join(parts)
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


def describe(errors: list[FieldError]) -> str:
    """The errors as one line: ``field: reason; ...`` (``<body>`` for the whole body)."""
    return "; ".join(f"{e.field or '<body>'}: {e.reason}" for e in errors)
