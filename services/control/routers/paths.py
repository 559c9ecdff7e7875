"""A check the routes that name a resource both in the path and in the body share."""

from __future__ import annotations

from schemas.errors import FieldError
from services.control.lookups import Refused


def same_as_path(field: str, in_body: str, in_path: str) -> None:
    """Refuse (422) a body naming another resource than its path."""
    if in_body != in_path:
        reason = f"'{in_body}' differs from '{in_path}' in the path"
        raise Refused(422, "invalid request", [FieldError(field=field, reason=reason)])
