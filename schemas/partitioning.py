"""Which partition of an event topic a ``tenant:unit`` key belongs to: Kafka's default
partitioner (the Java client's ``Utils.murmur2`` of the key, made positive, modulo the
partition count).

Every producer of this project groups events into batches by this partition, and the
stream checks each element of a batch against the partition it arrived on; any other
Kafka client keying a single event ``tenant:unit`` puts it in the same partition, so a
unit's events meet in one place however they were sent.
``tests/vectors/kafka_partitioner.json`` holds the Java client's own values.

Compiled with mypyc in the stream's group (``setup.py``): interpreted it costs several µs
a key, compiled well under one. Products of 32-bit words are formed from 16-bit halves,
so no intermediate value reaches 2**63: mypyc's native 64-bit integers (``i64``) hold
them all without a check.
"""

from __future__ import annotations

from typing import Any, Final

from mypy_extensions import i64  # mypyc's native 64-bit integers; plain ints interpreted

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_M_LOW: Final = _M & 0xFFFF
_M_HIGH: Final = _M >> 16
_MASK: Final = 0xFFFFFFFF


def _times_m(value: i64) -> i64:
    """``value * M`` modulo 2**32, for ``0 <= value < 2**32``."""
    return (value * _M_LOW + (((value * _M_HIGH) & 0xFFFF) << 16)) & _MASK


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``, as an unsigned 32-bit value."""
    length: i64 = len(data)
    h: i64 = (_SEED ^ length) & _MASK
    end: i64 = length - length % 4
    i: i64 = 0
    k: i64
    while i < end:
        k = (
            i64(data[i])
            | (i64(data[i + 1]) << 8)
            | (i64(data[i + 2]) << 16)
            | (i64(data[i + 3]) << 24)
        )
        k = _times_m(k)
        k ^= k >> 24
        k = _times_m(k)
        h = _times_m(h) ^ k
        i += 4
    extra: i64 = length - end
    if extra >= 3:
        h ^= i64(data[end + 2]) << 16
    if extra >= 2:
        h ^= i64(data[end + 1]) << 8
    if extra >= 1:
        h ^= i64(data[end])
        h = _times_m(h)
    h ^= h >> 13
    h = _times_m(h)
    h ^= h >> 15
    return int(h)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``key``
    (``Utils.toPositive(murmur2(key)) % partitions``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def unit_partition_key(tenant_id: str, unit_id: str) -> bytes:
    """The Kafka key of a unit's events, ``tenant:unit``: its partition groups them."""
    return f"{tenant_id}:{unit_id}".encode()


def partition_of_unit(tenant_id: str, unit_id: str, partitions: int) -> int:
    """The partition of the events of ``unit_id`` of ``tenant_id``."""
    return partition_for(unit_partition_key(tenant_id, unit_id), partitions)


def group_by_partition(
    keys: list[bytes | None], partitions: int
) -> tuple[dict[int, list[int]], list[int]]:
    """The indices of ``keys`` by the partition each key belongs to (in order within each),
    and the indices of the ``None`` keys (a producer picks their partitions). Compiled, a
    request's records are grouped in a fraction of the interpreted loop's time."""
    groups: dict[int, list[int]] = {}
    unkeyed: list[int] = []
    for index, key in enumerate(keys):
        if key is None:
            unkeyed.append(index)
        else:
            partition = partition_for(key, partitions)
            group = groups.get(partition)
            if group is None:
                groups[partition] = [index]
            else:
                group.append(index)
    return groups, unkeyed


def group_by_unit_partition(
    tenant_id: str, events: list[Any], partitions: int
) -> dict[int, list[Any]]:
    """``events`` of ``tenant_id`` (objects with a ``unit_id``) by the partition of their
    ``tenant:unit`` key, in order within each: the collector groups a request's accepted
    events without a key or a record per event (``services.collector.sink``)."""
    groups: dict[int, list[Any]] = {}
    for event in events:
        partition = partition_of_unit(tenant_id, event.unit_id, partitions)
        group = groups.get(partition)
        if group is None:
            groups[partition] = [event]
        else:
            group.append(event)
    return groups
