"""The topic catalog: names, keys, partitions and retention of every liftstream topic.

Topics are created by the platform from this catalog (``services.broker.topics``),
never by broker auto-creation. A namespace prefixes every name (default
``liftstream``), so several platforms or test runs can share one broker.
Exposures and outcomes must have the same partition count: the stream joins a
unit's events on one partition (co-partitioning by ``tenant:unit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FOREVER = "-1"
THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)
#: Largest record on the snapshots topic (a chunk of unit states).
SNAPSHOT_RECORD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicCatalog:
    namespace: str = "liftstream"
    event_partitions: int = 4

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
