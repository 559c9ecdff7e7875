"""``python -m services.broker start DIR`` / ``stop DIR``: the local broker for CI and scripts.

``start`` runs the broker detached, creates the catalog's topics and prints its bootstrap
address; ``stop`` shuts it down with SIGTERM. The pid is kept in ``DIR/broker.pid``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from services.broker.local import LocalKafka
from services.broker.topics import ensure_topics
from services.settings import ServiceSettings, load_or_exit


def _running_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "broker.pid").read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def _start(data_dir: Path) -> int:
    if _running_pid(data_dir) is not None:
        ports = json.loads((data_dir / "ports.json").read_text())
        print(f"127.0.0.1:{ports['broker_port']}")
        return 0
    broker = LocalKafka(data_dir).start()
    assert broker.process is not None
    (data_dir / "broker.pid").write_text(str(broker.process.pid))
    ensure_topics(broker.bootstrap, load_or_exit(ServiceSettings, "broker").platform.topics)
    print(broker.bootstrap)
    return 0


def _stop(data_dir: Path, timeout: float = 30.0) -> int:
    pid_file = data_dir / "broker.pid"
    if not pid_file.exists():
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.broker")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args()
    if args.action == "start":
        return _start(args.data_dir)
    return _stop(args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
