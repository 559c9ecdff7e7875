"""``python -m services.broker start DIR [--brokers N]`` / ``stop DIR``: the local broker
(or a local cluster of N brokers) for CI and scripts; ``python -m services.broker topics``:
create the catalog's topics on the cluster ``LIFTSTREAM_BOOTSTRAP`` names (compose and
the Helm chart run it before the services start).

``start`` runs the broker(s) detached, creates the catalog's topics (replicated on every
broker of a cluster, 12 event partitions unless ``LIFTSTREAM_PARTITIONS`` says otherwise)
and prints the bootstrap address; ``stop`` shuts them down with SIGTERM. The pids are kept
in ``DIR/broker.pid``, one a line, and the bootstrap address in ``DIR/bootstrap``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from services.broker.cluster import LocalKafkaCluster
from services.broker.local import LocalKafka
from services.broker.topics import ensure_topics, wait_for_broker
from services.broker.topology import cluster_settings
from services.settings import ServiceSettings, load_or_exit

#: How long ``topics`` waits for the cluster (containers start in any order).
TOPICS_WAIT_S = 120.0


def _pids(data_dir: Path) -> list[int]:
    try:
        text = (data_dir / "broker.pid").read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(data_dir: Path, brokers: int) -> int:
    pids = _pids(data_dir)
    if pids and all(_alive(pid) for pid in pids):
        print((data_dir / "bootstrap").read_text().strip())
        return 0
    if pids:
        _stop(data_dir)  # a node is gone: start the whole set again
    settings = cluster_settings(load_or_exit(ServiceSettings, "broker").platform, brokers)
    if brokers == 1:
        node = LocalKafka(data_dir).start()
        assert node.process is not None
        processes, bootstrap = [node.process], node.bootstrap
    else:
        cluster = LocalKafkaCluster(data_dir, brokers).start()
        processes = [node.process for node in cluster.nodes if node.process is not None]
        bootstrap = cluster.bootstrap
    (data_dir / "broker.pid").write_text("".join(f"{p.pid}\n" for p in processes))
    (data_dir / "bootstrap").write_text(bootstrap + "\n")
    ensure_topics(bootstrap, settings.topics)
    print(bootstrap)
    return 0


def _stop(data_dir: Path, timeout: float = 30.0) -> int:
    pids = _pids(data_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    (data_dir / "broker.pid").unlink(missing_ok=True)
    return 0


def _topics() -> int:
    settings = load_or_exit(ServiceSettings, "broker").platform
    if not settings.bootstrap:
        print("LIFTSTREAM_BOOTSTRAP: no Kafka bootstrap server is configured", file=sys.stderr)
        return 2
    if not wait_for_broker(settings.bootstrap, timeout=TOPICS_WAIT_S):
        print(f"Kafka at {settings.bootstrap} did not answer", file=sys.stderr)
        return 1
    created = ensure_topics(settings.bootstrap, settings.topics)
    print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.broker")
    parser.add_argument("action", choices=["start", "stop", "topics"])
    parser.add_argument("data_dir", type=Path, nargs="?")
    parser.add_argument(
        "--brokers", type=int, default=1, help="nodes of a local cluster (1 to 9; default 1)"
    )
    args = parser.parse_args()
    if not 1 <= args.brokers <= 9:
        parser.error(f"--brokers: must be between 1 and 9, got {args.brokers}")
    if args.action == "topics":
        return _topics()
    if args.data_dir is None:
        parser.error(f"{args.action}: the broker's data folder is needed")
    if args.action == "start":
        return _start(args.data_dir, args.brokers)
    return _stop(args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
