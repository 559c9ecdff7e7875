"""The topic catalog: names, keys, partitions and retention of every liftstream topic.

Topics are created by the platform from this catalog (``services.broker.topics``),
never by broker auto-creation. A namespace prefixes every name (default
``liftstream``), so several platforms or test runs can share one broker.
Exposures and outcomes must have the same partition count: the stream joins a
unit's events on one partition (co-partitioning by ``tenant:unit``).

Every topic is created with the catalog's ``replication_factor`` (1 on a single broker,
3 on a cluster) and ``min.insync.replicas`` (by default a majority of the replicas: 2 of
3), so that with producers' acks=all an acknowledged event is on at least that many
brokers, and losing any one broker of three loses nothing and stops nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

FOREVER = "-1"
THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)
#: Largest record on the snapshots topic (a chunk of unit states).
SNAPSHOT_RECORD_BYTES = 8 * 1024 * 1024


def majority(replication_factor: int) -> int:
    """The default ``min.insync.replicas``: more than half of the replicas."""
    return replication_factor // 2 + 1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1


@dataclass(frozen=True)
class TopicCatalog:
    namespace: str = "liftstream"
    event_partitions: int = 4
    replication_factor: int = 1
    #: 0: a majority of ``replication_factor`` (``majority``).
    min_insync_replicas: int = 0

    def __post_init__(self) -> None:
        if self.event_partitions < 1:
            raise ValueError(f"event_partitions: must be >= 1, got {self.event_partitions}")
        if self.replication_factor < 1:
            raise ValueError(f"replication_factor: must be >= 1, got {self.replication_factor}")
        if not 0 <= self.min_insync_replicas <= self.replication_factor:
            raise ValueError(
                f"min_insync_replicas: must be 0 (a majority) or at most the replication factor "
                f"{self.replication_factor}, got {self.min_insync_replicas}"
            )

    @property
    def min_insync(self) -> int:
        """``min.insync.replicas`` of every topic."""
        return self.min_insync_replicas or majority(self.replication_factor)

    @property
    def control(self) -> str:
        return f"{self.namespace}.control"

    @property
    def exposures(self) -> str:
        return f"{self.namespace}.exposures"

    @property
    def outcomes(self) -> str:
        return f"{self.namespace}.outcomes"

    @property
    def aggregates(self) -> str:
        return f"{self.namespace}.aggregates"

    @property
    def deadletter(self) -> str:
        return f"{self.namespace}.deadletter"

    @property
    def stream_snapshots(self) -> str:
        return f"{self.namespace}.stream-snapshots"

    def specs(self) -> list[TopicSpec]:
        return [
            replace(
                spec,
                replication_factor=self.replication_factor,
                config={**spec.config, "min.insync.replicas": str(self.min_insync)},
            )
            for spec in self._unreplicated_specs()
        ]

    def _unreplicated_specs(self) -> list[TopicSpec]:
        events = {"retention.ms": FOREVER, "cleanup.policy": "delete"}
        return [
            # One partition: a total order of changes, kept forever (event-sourced config).
            TopicSpec(self.control, 1, "tenant:experiment", dict(events)),
            TopicSpec(self.exposures, self.event_partitions, "tenant:unit", dict(events)),
            TopicSpec(self.outcomes, self.event_partitions, "tenant:unit", dict(events)),
            # One partition keeps aggregates and the progress marks after them in order.
            TopicSpec(self.aggregates, 1, "record key", {"cleanup.policy": "compact"}),
            TopicSpec(self.deadletter, 1, "original key", {"retention.ms": THIRTY_DAYS_MS}),
            # The stream worker's unit states, partition p for source partition p: chunks
            # of the latest snapshot and a manifest naming them (services.stream.snapshots).
            TopicSpec(
                self.stream_snapshots,
                self.event_partitions,
                "manifest | chunk|snapshot|index",
                {"cleanup.policy": "compact", "max.message.bytes": str(SNAPSHOT_RECORD_BYTES)},
            ),
        ]
