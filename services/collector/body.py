"""Turning a request body into a list of raw events, or one clear reason why not.

The body is UTF-8 JSON: ``{"events": [...]}`` or a bare list ``[...]``. Anything else
(invalid UTF-8, not JSON, another shape) is a ``BodyError`` answered with 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class BodyError(Exception):
    reason: str
    #: Low-cardinality label for the rejection metric.
    code: str


def decode_batch(body: bytes) -> list[Any]:
    """The raw events of a batch body; ``BodyError`` naming what is wrong."""
    if not body:
        raise BodyError('the body is empty; send {"events": [...]}', "body_empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(
            f"the body is not valid UTF-8 (byte {error.start}: {error.reason})", "body_not_utf8"
        ) from None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BodyError(f"the body is not valid JSON: {error}", "body_not_json") from None
    if isinstance(document, dict):
        unknown = sorted(set(document) - {"events"})
        if unknown:
            raise BodyError(
                f"unknown top-level field(s) {', '.join(map(repr, unknown))}; "
                'the body is {"events": [...]}',
                "body_shape",
            )
        if "events" not in document:
            raise BodyError("events: field required", "body_shape")
        document = document["events"]
        if not isinstance(document, list):
            raise BodyError("events: must be a list of event objects", "body_shape")
    if not isinstance(document, list):
        raise BodyError('the body must be {"events": [...]} or a list of events', "body_shape")
    if not document:
        raise BodyError("events: the batch is empty", "body_empty")
    return document
