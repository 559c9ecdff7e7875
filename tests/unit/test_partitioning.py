"""Kafka's default partitioner, as this project computes it, equals the Java client's.

The vectors come from the Kafka jars the project ships (``deploy/kafka/lib``), written
by ``tests/vectors/KafkaPartitionerVectors.java``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from schemas.partitioning import (
    group_by_partition,
    group_by_unit_partition,
    murmur2,
    partition_for,
    partition_of_unit,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "kafka_partitioner.json").read_text()
)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["key"][:40])
def test_murmur2_and_partitions_equal_the_java_clients(vector: dict[str, Any]) -> None:
    key = vector["key"].encode()
    assert murmur2(key) == vector["murmur2"] & 0xFFFFFFFF
    got = [partition_for(key, count) for count in VECTORS["partition_counts"]]
    assert got == vector["partitions"]


def test_the_vectors_cover_every_length_remainder_and_non_ascii_keys() -> None:
    keys = [vector["key"].encode() for vector in VECTORS["vectors"]]
    assert {len(key) % 4 for key in keys} == {0, 1, 2, 3}
    assert any(len(key) != len(key.decode()) for key in keys)
    assert any(vector["murmur2"] < 0 for vector in VECTORS["vectors"])


@given(st.binary(max_size=300))
def test_murmur2_equals_kafka_pythons_on_any_bytes(data: bytes) -> None:
    # kafka-python's partitioner places single-event messages keyed by other producers.
    assert murmur2(data) == kafka_python_murmur2(data)


def test_a_units_partition_is_that_of_its_key() -> None:
    assert partition_of_unit("acme", "user-0001", 12) == partition_for(b"acme:user-0001", 12)


def test_records_are_grouped_by_the_partition_of_their_key_in_order() -> None:
    keys: list[bytes | None] = [f"acme:user-{i}".encode() for i in range(200)]
    keys[7] = keys[50] = None
    groups, unkeyed = group_by_partition(keys, 6)
    assert unkeyed == [7, 50]
    for partition, indices in groups.items():
        assert indices == sorted(indices)
        assert all(partition_for(keys[i] or b"", 6) == partition for i in indices)
    assert sorted(i for indices in groups.values() for i in indices) == [
        i for i in range(200) if i not in (7, 50)
    ]


def test_a_tenants_events_are_grouped_by_the_java_clients_partition_of_tenant_unit() -> None:
    """The collector's grouping of accepted events: each lands where the Java client puts a
    record keyed ``tenant:unit``, in the request's order within each partition."""
    java = {
        vector["key"]: vector["partitions"]
        for vector in VECTORS["vectors"]
        if vector["key"].count(":") == 1
    }
    assert len(java) >= 3
    events = [
        SimpleNamespace(unit_id=key.split(":")[1], order=order)
        for order, key in enumerate([*java, *java])  # each unit twice: order is kept
    ]
    tenants = {key.split(":")[0] for key in java}
    for tenant in tenants:
        mine = [event for event in events if f"{tenant}:{event.unit_id}" in java]
        for count_index, count in enumerate(VECTORS["partition_counts"]):
            groups = group_by_unit_partition(tenant, mine, count)
            assert sorted(event.order for group in groups.values() for event in group) == [
                event.order for event in mine
            ]
            for partition, group in groups.items():
                assert [event.order for event in group] == sorted(event.order for event in group)
                for event in group:
                    assert java[f"{tenant}:{event.unit_id}"][count_index] == partition
