"""Deterministic assignment of units to experiment variants: a pure function of the ids.

The algorithm, which every SDK (and the stream processor) must reproduce bit for bit:

1. ``bucket(seed, experiment_key, unit_id, salt)``:
   take the UTF-8 bytes of ``f"{seed}|{experiment_key}|{salt}|{unit_id}"``, hash them
   with SHA-256, read the first 8 bytes of the digest as an unsigned 64-bit big-endian
   integer ``u``, and return ``(u >> 11) / 2**53``. That is ``u / 2**64`` rounded down to
   a multiple of ``2**-53``: exactly representable as an IEEE-754 double, so every
   language gets the same number, and never rounded up to 1.0, so it lies in ``[0, 1)``.
   (In Java: ``(u >>> 11) * 0x1.0p-53``; in JavaScript, with BigInt:
   ``Number(u >> 11n) / 2 ** 53``.)
2. ``seed`` is ``experiment.seed`` or, when that is empty, ``experiment.key``.
3. The unit is included when ``bucket(..., salt="traffic") < traffic / 100``.
4. An included unit's variant: with ``v = bucket(..., salt="variant")`` and the variants in
   their defined order, the first variant whose cumulative weight ``c`` (in percent, summed
   in order) satisfies ``v < c / 100``; the last variant if rounding leaves none.

Traffic and variant use independent buckets, so ramping traffic from 5% to 25% keeps
every unit included at 5% in the experiment and on the same variant.
"""

from __future__ import annotations

import hashlib
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from schemas.experiment import Experiment

TRAFFIC_SALT = "traffic"
VARIANT_SALT = "variant"

_BUCKET_SCALE = 1.0 / (1 << 53)
_first_u64: Callable[[bytes], tuple[int]] = struct.Struct(">Q").unpack_from


def bucket(seed: str, experiment_key: str, unit_id: str, salt: str) -> float:
    """The unit's position in ``[0, 1)`` for this experiment and salt (see module doc)."""
    digest = hashlib.sha256(f"{seed}|{experiment_key}|{salt}|{unit_id}".encode()).digest()
    return (_first_u64(digest)[0] >> 11) * _BUCKET_SCALE


class _PrefixedBucket:
    """``bucket`` with the fixed ``seed|key|salt|`` prefix hashed once, for speed."""

    __slots__ = ("_prefix_hash",)

    def __init__(self, seed: str, experiment_key: str, salt: str) -> None:
        self._prefix_hash = hashlib.sha256(f"{seed}|{experiment_key}|{salt}|".encode())

    def __call__(self, unit_id: str) -> float:
        hasher = self._prefix_hash.copy()
        hasher.update(unit_id.encode())
        return (_first_u64(hasher.digest())[0] >> 11) * _BUCKET_SCALE


#: Public name for other modules hashing with a fixed prefix (layers, holdout, flag ramps).
PrefixedBucket = _PrefixedBucket


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """What assignment needs from an experiment, precomputed once."""

    traffic_share: float
    variant_keys: tuple[str, ...]
    cumulative_shares: tuple[float, ...]
    traffic_bucket: _PrefixedBucket
    variant_bucket: _PrefixedBucket

    @classmethod
    def of(cls, experiment: Experiment) -> CompiledExperiment:
        cumulative: list[float] = []
        running_total = 0.0
        for variant in experiment.variants:
            running_total += variant.weight
            cumulative.append(running_total / 100)
        seed, key = experiment.hash_seed, experiment.key
        return cls(
            traffic_share=experiment.traffic / 100,
            variant_keys=tuple(variant.key for variant in experiment.variants),
            cumulative_shares=tuple(cumulative),
            traffic_bucket=_PrefixedBucket(seed, key, TRAFFIC_SALT),
            variant_bucket=_PrefixedBucket(seed, key, VARIANT_SALT),
        )

    def assign(self, unit_id: str) -> str | None:
        # Buckets are < 1, so at 100% traffic every unit is included without hashing.
        if self.traffic_share < 1.0 and self.traffic_bucket(unit_id) >= self.traffic_share:
            return None
        position = self.variant_bucket(unit_id)
        for variant_key, share in zip(self.variant_keys, self.cumulative_shares, strict=True):
            if position < share:
                return variant_key
        return self.variant_keys[-1]


# Compiled forms keyed by id(experiment); the weak reference tells a live experiment from
# a new object that happens to reuse a collected one's id. Experiments hold lists, so they
# are not hashable and cannot key a WeakKeyDictionary.
_compiled: dict[int, tuple[weakref.ref[Experiment], CompiledExperiment]] = {}


def compile_experiment(experiment: Experiment) -> CompiledExperiment:
    """The experiment's precomputed assignment, cached for as long as the experiment lives."""
    entry = _compiled.get(id(experiment))
    if entry is not None and entry[0]() is experiment:
        return entry[1]
    compiled = CompiledExperiment.of(experiment)
    experiment_id = id(experiment)
    _compiled[experiment_id] = (
        weakref.ref(experiment, lambda _ref: _compiled.pop(experiment_id, None)),
        compiled,
    )
    return compiled


def assign(experiment: Experiment, unit_id: str) -> str | None:
    """The unit's variant key, or None when the unit is outside the experiment's traffic."""
    return compile_experiment(experiment).assign(unit_id)
