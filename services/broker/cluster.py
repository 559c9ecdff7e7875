"""A local Kafka cluster: N KRaft nodes, each broker and controller, from the same jars.

Node ``i`` (1-based) keeps its data in ``DIR/node-i``; the cluster's id and every node's
ports are kept in ``DIR/cluster.json``, so a cluster started again on the same folder is
the same cluster with its log (ports chosen again only when one is taken and the cluster
is stopped as a whole, since every node knows the others' controller ports). The nodes
are launched together (a controller quorum needs a majority to elect a leader) and each
can be stopped, killed and started again alone while the others keep serving.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from services.broker.local import BrokerError, LocalKafka, free_port, kafka_cluster_id, port_is_free

#: A cluster node's JVM heap: three of them share the machine with the platform.
CLUSTER_HEAP_OPTS = ("-Xms192m", "-Xmx512m")


@dataclass
class LocalKafkaCluster:
    """``brokers`` local Kafka nodes with replication ``brokers`` for every topic."""

    data_dir: Path
    brokers: int = 3
    nodes: list[LocalKafka] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= 9:
            raise ValueError(f"brokers: must be between 1 and 9, got {self.brokers}")

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def _layout_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _layout(self) -> dict[str, object]:
        """The kept cluster id and ports, or a new layout (fresh ports, fresh id)."""
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            kept = json.loads(self._layout_file.read_text())
            ports = [tuple(pair) for pair in kept["ports"]]
            if len(ports) != self.brokers:
                raise BrokerError(
                    f"{self.data_dir} holds a cluster of {len(ports)} brokers, not {self.brokers}"
                )
            if all(port_is_free(port) for pair in ports for port in pair):
                return kept
            # A node's port is taken: the whole cluster moves (its nodes are all down).
            return {"cluster_id": kept["cluster_id"], "ports": self._fresh_ports()}
        return {"cluster_id": kafka_cluster_id(), "ports": self._fresh_ports()}

    def _fresh_ports(self) -> list[tuple[int, int]]:
        chosen: set[int] = set()
        ports: list[tuple[int, int]] = []
        for _ in range(self.brokers):
            pair = []
            for _ in range(2):
                port = free_port()
                while port in chosen:
                    port = free_port()
                chosen.add(port)
                pair.append(port)
            ports.append((pair[0], pair[1]))
        return ports

    def start(self, timeout: float = 120.0) -> LocalKafkaCluster:
        """Start every node; return once each answers. On failure stop them all."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = self._layout()
        self._layout_file.write_text(json.dumps(layout))
        ports = [(int(b), int(c)) for b, c in layout["ports"]]  # type: ignore[attr-defined]
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports, start=1))
        self.nodes = [
            LocalKafka(
                self.data_dir / f"node-{index}",
                broker_port=broker_port,
                controller_port=controller_port,
                node_id=index,
                quorum_voters=voters,
                cluster_id=str(layout["cluster_id"]),
                replication_factor=self.brokers,
                heap_opts=CLUSTER_HEAP_OPTS,
            )
            for index, (broker_port, controller_port) in enumerate(ports, start=1)
        ]
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once (a clean shutdown), then wait for each."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
