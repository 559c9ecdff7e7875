"""The rules every ``faust.App`` of this project follows, written once: the stream worker
(``services.stream.faust_worker``) and the rollout controller (``services.controller``).

Messages are raw bytes (the services parse them with ``schemas``); topics are created by
``liftstream up`` with their own partition counts and configs, never declared by Faust
(nor its leader topic);
a partition without committed offsets is read from its start; the broker timeouts make
a dead member leave its group after ``broker_session_timeout`` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

#: Seconds without a heartbeat after which the broker gives a member's partitions away.
SESSION_TIMEOUT_S = 10.0


def faust_app(
    app_id: str,
    bootstrap: str,
    datadir: Path,
    app_class: type[faust.App] = faust.App,
    **overrides: Any,
) -> faust.App:
    """An ``app_class`` of group ``app_id`` on the broker, with the project's settings
    (``overrides`` add or replace settings of one app)."""
    datadir.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "web_enabled": False,
        "datadir": str(datadir),
        "topic_allow_declare": False,
        # No @app.timer(on_leader=True): without this, Faust declares a
        # '<group>-__assignor-__leader' topic, which the broker (no auto-creation)
        # refuses. The partition assignor does not need it.
        "topic_disable_leader": True,
        # Above 0 (Faust's default, 1), Faust's aiokafka driver uses the app's
        # PartitionAssignor (Faust's co-partitioning one, or the controller's); with 0
        # and no table it would use round-robin (see _check_copartitioned).
        "table_standby_replicas": 1,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": 2.0,
        "broker_max_poll_interval": 600.0,
        "broker_rebalance_timeout": 300.0,
    }
    settings.update(overrides)
    return app_class(app_id, **settings)
