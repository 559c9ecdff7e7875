"""Errors the SDK and CLI raise for bad input, each naming the field and the reason.

Pydantic's errors are turned into ``field.path: reason`` lines by
``schemas.errors.field_errors``, the one flattener the collector and the stream use too,
so an invalid event is worded the same wherever it is refused.
"""

from __future__ import annotations

from pydantic import ValidationError

from schemas.errors import FieldError, field_errors


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
        return cls(subject, field_errors(error))


class PlatformUnavailableError(RuntimeError):
    """No platform to talk to: no broker configured or reachable, no results service."""


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge events the SDK accepted; they were not stored."""
