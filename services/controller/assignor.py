"""The controller group's partition assignor: one member gets every partition, the others
none. That member is the active controller (it reads the whole control log, every
aggregates and dead-letter partition, and makes the checks); the others are standbys
waiting in the group. When the active member dies (its session times out) or leaves, the
group rebalances and a standby gets everything.

Faust's own assignor spreads partitions over members, so two controllers would each see
half of the aggregates; and Faust's leader election (``on_leader`` timers) needs a topic
of its own, which this platform does not let Faust declare. Owning the single-partition
control topic *is* the leadership here, and owning it together with every input makes the
leader the one member able to decide. The choice is sticky: a member that was active
stays active when another joins, so a new standby does not take the work over.
"""

from __future__ import annotations

from aiokafka.cluster import ClusterMetadata
from faust.assignor import PartitionAssignor
from faust.assignor.client_assignment import ClientAssignment
from faust.assignor.partition_assignor import MemberAssignmentMapping, MemberMetadataMapping


class SingleActiveAssignor(PartitionAssignor):  # type: ignore[misc]
    def _perform_assignment(
        self, cluster: ClusterMetadata, member_metadata: MemberMetadataMapping
    ) -> MemberAssignmentMapping:
        clients = {
            member: self._get_client_metadata(metadata)
            for member, metadata in member_metadata.items()
        }
        self._update_member_urls(clients)
        topics = sorted({t for metadata in member_metadata.values() for t in metadata.subscription})
        active = choose_active({m: bool(c.assignment.actives) for m, c in clients.items()})
        assignments = {m: ClientAssignment(actives={}, standbys={}) for m in member_metadata}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions:
                assignments[active].actives[topic] = sorted(partitions)
        return self._protocol_assignments(assignments, {}, {}, dict.fromkeys(topics, 0))


def choose_active(was_active: dict[str, bool]) -> str:
    """The member to give everything: one that had partitions before (the sticky choice),
    else the first by id."""
    return min(was_active, key=lambda member: (not was_active[member], member))
