"""The event contract of ``schemas.events`` mirrored for msgspec: the same fields and
constraints (but the patterns of keys, tenant ids and event names, which
``services.stream.intake`` checks after decoding), and the decoders built on it.

A module of its own: msgspec builds a ``Struct`` from the class keywords of a plain
Python class body, so these classes stay interpreted while ``intake`` may be compiled.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from schemas.limits import MAX_OUTCOME_VALUE

_UnitId = Annotated[str, Meta(min_length=1, max_length=256)]
_Scalar = str | int | float | bool | None


# gc=False: decoded JSON cannot form reference cycles, and the cycle collector need not
# track millions of short-lived structs. UNSET, not {}: an absent map costs no new dict
# (the stream does not read them), while an explicit null is still refused.
class Exposure(
    msgspec.Struct, tag_field="type", tag="exposure", forbid_unknown_fields=True, gc=False
):
    event_id: uuid.UUID
    tenant_id: str
    unit_id: _UnitId
    timestamp: datetime
    experiment_key: str
    variant_key: str
    received_at: datetime | None = None
    schema_version: Literal[1] = 1
    experiment_version: Annotated[int, Meta(ge=1)] = 1
    attributes: dict[str, _Scalar] | UnsetType = UNSET


class Outcome(
    msgspec.Struct, tag_field="type", tag="outcome", forbid_unknown_fields=True, gc=False
):
    event_id: uuid.UUID
    tenant_id: str
    unit_id: _UnitId
    timestamp: datetime
    event: str
    value: Annotated[float, Meta(ge=-MAX_OUTCOME_VALUE, le=MAX_OUTCOME_VALUE)] = 1.0
    received_at: datetime | None = None
    schema_version: Literal[1] = 1
    properties: dict[str, Any] | UnsetType = UNSET


#: One JSON event.
DECODER = msgspec.json.Decoder(Exposure | Outcome)
#: A JSON array of events.
ARRAY_DECODER = msgspec.json.Decoder(list[Exposure | Outcome])
#: A JSON array of anything, each element kept as its JSON text (a batch with a bad
#: element is decided element by element).
RAW_ARRAY_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
