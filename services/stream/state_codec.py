"""Compact bytes for a ``UnitState``, as written to the unit table's changelog.

One JSON object (orjson) per unit: tenant, partition, exposure summaries, outcome history
as ``[timestamp_us, value]`` pairs, and the seen event ids as one base64 string of 16-byte
UUIDs. Floats round-trip exactly (orjson writes the shortest exact representation).
The Faust codec wraps the two functions so the table keeps live objects in memory and
only encodes them for the changelog.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from faust.serializers import codecs

from services.stream.attribution import ExposureSummary, UnitState

_ID_BYTES = 16


def encode_unit_state(state: UnitState) -> bytes:
    return orjson.dumps(
        {
            "t": state.tenant_id,
            "p": state.partition,
            "x": {
                experiment: [summary.first_timestamp, summary.first_variant, summary.variants]
                for experiment, summary in state.exposures.items()
            },
            "o": state.outcomes,
            "s": base64.b64encode(b"".join(state.seen_event_ids)).decode("ascii"),
        }
    )


def decode_unit_state(payload: bytes) -> UnitState:
    body = orjson.loads(payload)
    ids = base64.b64decode(body["s"])
    return UnitState(
        tenant_id=body["t"],
        partition=body["p"],
        seen_event_ids={ids[i : i + _ID_BYTES] for i in range(0, len(ids), _ID_BYTES)},
        exposures={
            experiment: ExposureSummary(first_timestamp, first_variant, tuple(variants))
            for experiment, (first_timestamp, first_variant, variants) in body["x"].items()
        },
        outcomes={
            event: [(timestamp, float(value)) for timestamp, value in history]
            for event, history in body["o"].items()
        },
    )


class UnitStateCodec(codecs.Codec):
    """Faust codec: ``UnitState`` <-> bytes (pass an instance as the table's value serializer)."""

    def _dumps(self, obj: Any) -> bytes:
        return encode_unit_state(obj)

    def _loads(self, s: bytes) -> Any:
        return decode_unit_state(s)
