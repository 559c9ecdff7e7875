"""A check the routes that name a resource both in the path and in the body share."""

from __future__ import annotations

from services.control.lookups import refuse


def same_as_path(field: str, in_body: str, in_path: str) -> None:
    """Refuse (422) a body naming another resource than its path."""
    if in_body != in_path:
        raise refuse(
            422, "invalid request", field, f"'{in_body}' differs from '{in_path}' in the path"
        )
