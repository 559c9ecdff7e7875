"""How many replicas and partitions the platform's topics get for a number of brokers.

One broker: what the settings say (replication 1, 4 event partitions by default). A
cluster: every topic replicated on up to three brokers with ``min.insync.replicas`` a
majority (2 of 3), and 12 event partitions, so that up to 12 stream workers share them;
``LIFTSTREAM_REPLICATION_FACTOR`` and ``LIFTSTREAM_PARTITIONS`` set still win.
"""

from __future__ import annotations

import os
from dataclasses import replace

from liftstream.settings import Settings

#: Event partitions on a cluster: the most stream workers that can share the work.
CLUSTER_PARTITIONS = 12
#: Replicas per topic on a cluster (more brokers spread partitions, not copies).
CLUSTER_REPLICATION = 3


def cluster_settings(settings: Settings, brokers: int) -> Settings:
    """``settings`` with the replication and partitions suited to ``brokers`` brokers."""
    if brokers <= 1:
        return settings
    replication = settings.replication_factor
    if not os.environ.get("LIFTSTREAM_REPLICATION_FACTOR"):
        replication = min(brokers, CLUSTER_REPLICATION)
    if replication > brokers:
        raise ValueError(
            f"LIFTSTREAM_REPLICATION_FACTOR: {replication} replicas need as many brokers, "
            f"not {brokers}"
        )
    partitions = settings.partitions
    if not os.environ.get("LIFTSTREAM_PARTITIONS"):
        partitions = CLUSTER_PARTITIONS
    return replace(settings, replication_factor=replication, partitions=partitions)
