"""Compact bytes for ``UnitState`` objects, as written to the worker's snapshots.

One JSON object (orjson) per unit: tenant, partition, exposure summaries, outcome history
as ``[timestamp_us, value]`` pairs, and the seen event ids as one base64 string of 16-byte
UUIDs. Floats round-trip exactly (orjson writes the shortest exact representation).
A snapshot chunk is a JSON array of such objects, keyed by the units' ``tenant:unit``.
"""

from __future__ import annotations

import base64
from itertools import repeat
from typing import Any

import orjson

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
            "s": base64.b64encode(
                b"".join(map(int.to_bytes, state.seen_event_ids, repeat(_ID_BYTES)))
            ).decode("ascii"),
        }
    )


def decode_unit_state(payload: bytes) -> UnitState:
    return _unit_state(orjson.loads(payload))


def encode_chunk(units: list[tuple[bytes, bytes]]) -> bytes:
    """``[[key, state], ...]`` for (``tenant:unit`` key, ``encode_unit_state`` bytes) pairs."""
    return (
        b"["
        + b",".join(b'["' + base64.b64encode(key) + b'",' + state + b"]" for key, state in units)
        + b"]"
    )


def decode_chunk(payload: bytes) -> dict[bytes, UnitState]:
    return {base64.b64decode(key): _unit_state(body) for key, body in orjson.loads(payload)}


def _unit_state(body: dict[str, Any]) -> UnitState:
    ids = base64.b64decode(body["s"])
    return UnitState(
        tenant_id=body["t"],
        partition=body["p"],
        seen_event_ids={
            int.from_bytes(ids[i : i + _ID_BYTES]) for i in range(0, len(ids), _ID_BYTES)
        },
        exposures={
            experiment: ExposureSummary(first_timestamp, first_variant, tuple(variants))
            for experiment, (first_timestamp, first_variant, variants) in body["x"].items()
        },
        outcomes={
            event: [(timestamp, float(value)) for timestamp, value in history]
            for event, history in body["o"].items()
        },
    )
