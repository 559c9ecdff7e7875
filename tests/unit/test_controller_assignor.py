"""The controller group's assignor: one member gets every partition (it is the active
controller), the others none; a member that was active stays active when another joins."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata

from services.controller.assignor import SingleActiveAssignor
from services.faust_app import faust_app

TOPICS = {"ns.control": {0}, "ns.aggregates": {0}, "ns.deadletter": {0, 1, 2}}


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return TOPICS.get(topic)


def _member(assignor: SingleActiveAssignor, url: str, actives: dict[str, list[int]]) -> Any:
    metadata = ClientMetadata(
        assignment=ClientAssignment(actives=actives, standbys={}),
        url=url,
        changelog_distribution={},
    )
    return ConsumerProtocolMemberMetadata(assignor.version, sorted(TOPICS), metadata.dumps())


def _assign(tmp_path: Any, members: dict[str, dict[str, list[int]]]) -> dict[str, list[Any]]:
    app = faust_app(
        "ns-controller", "127.0.0.1:9", tmp_path, PartitionAssignor=SingleActiveAssignor
    )
    assignor = app.assignor
    assert isinstance(assignor, SingleActiveAssignor)
    metadata = {m: _member(assignor, f"http://{m}:1", a) for m, a in members.items()}
    result = assignor.assign(_Cluster(), metadata)
    return {member: sorted(a.assignment) for member, a in result.items()}


def test_one_member_gets_every_partition_and_the_other_none(tmp_path: Any) -> None:
    assigned = _assign(tmp_path, {"m-a": {}, "m-b": {}})
    everything = sorted((t, sorted(p)) for t, p in TOPICS.items())
    assert assigned["m-a"] == everything
    assert assigned["m-b"] == []


def test_the_active_member_keeps_everything_when_another_joins(tmp_path: Any) -> None:
    previous = {topic: sorted(partitions) for topic, partitions in TOPICS.items()}
    assigned = _assign(tmp_path, {"m-a": {}, "m-b": previous})
    assert assigned["m-a"] == []
    assert [topic for topic, _ in assigned["m-b"]] == sorted(TOPICS)
