"""Start and stop a Kafka node (KRaft broker and controller) from the jars that Maven
Central serves: a broker alone, or one node of a local cluster (``cluster.py``).

The jars are resolved once into ``deploy/kafka/lib`` by Maven (cached between runs,
as is ``~/.m2``). A data directory is formatted once with ``kafka.tools.StorageTool``
and reused, so the event log survives restarts of ``liftstream up``; ports are kept
from the last run when free, else fresh loopback ports are taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from services.broker.topics import wait_for_broker

KAFKA_DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
JARS_DIR = KAFKA_DEPLOY_DIR / "lib"
HEAP_OPTS = ["-Xms256m", "-Xmx768m"]


class BrokerError(RuntimeError):
    """The local broker could not be set up or did not come up."""


def ensure_broker_jars() -> Path:
    """Resolve the broker jars with Maven if they are not there yet; return the folder."""
    if JARS_DIR.is_dir() and any(JARS_DIR.glob("kafka_2.13-*.jar")):
        return JARS_DIR
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka broker jars")
    result = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy-dependencies"],
        cwd=KAFKA_DEPLOY_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not any(JARS_DIR.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn could not resolve the Kafka jars:\n{result.stdout}{result.stderr}")
    return JARS_DIR


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server binding with SO_REUSEADDR (Kafka, uvicorn) could take ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class LocalKafka:
    """One broker process whose data lives in ``data_dir``.

    Alone by default (node 1, its own controller quorum, replication 1). A cluster node
    is given its ``node_id``, the cluster's ``quorum_voters`` and ``cluster_id``, and
    fixed ports (the other nodes know them): it never moves to other ports.
    """

    data_dir: Path
    broker_port: int = 0
    controller_port: int = 0
    node_id: int = 1
    #: ``id@host:port,...`` of the cluster's controllers; empty: this node alone.
    quorum_voters: str = ""
    cluster_id: str = ""
    replication_factor: int = 1
    heap_opts: tuple[str, ...] = tuple(HEAP_OPTS)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: ``time.monotonic()`` when the broker last answered after a start.
    started_at: float = field(default=0.0, repr=False)

    @property
    def in_cluster(self) -> bool:
        return bool(self.quorum_voters)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _ports_file(self) -> Path:
        return self.data_dir / "ports.json"

    def _choose_ports(self) -> None:
        if self.in_cluster:
            taken = [p for p in (self.broker_port, self.controller_port) if not port_is_free(p)]
            if taken:
                raise BrokerError(
                    f"node {self.node_id}: port(s) {taken} are taken; the cluster's other "
                    f"nodes know this node by them"
                )
            return
        previous: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            previous = json.loads(self._ports_file.read_text())
        for name in ("broker_port", "controller_port"):
            wanted = getattr(self, name) or previous.get(name, 0)
            setattr(self, name, wanted if wanted and port_is_free(wanted) else free_port())
        self._ports_file.write_text(
            json.dumps({"broker_port": self.broker_port, "controller_port": self.controller_port})
        )

    def _write_config(self) -> Path:
        template = (KAFKA_DEPLOY_DIR / "server.properties.template").read_text()
        config = self.data_dir / "server.properties"
        from schemas.topics import majority

        voters = self.quorum_voters or f"{self.node_id}@127.0.0.1:{self.controller_port}"
        config.write_text(
            template.format(
                node_id=self.node_id,
                quorum_voters=voters,
                broker_port=self.broker_port,
                controller_port=self.controller_port,
                log_dir=self.data_dir / "log",
                replication_factor=self.replication_factor,
                min_insync_replicas=majority(self.replication_factor),
            )
        )
        return config

    def _java(self, *args: str) -> list[str]:
        classpath = str(ensure_broker_jars() / "*")
        logging_opts = ["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
        return ["java", *self.heap_opts, *logging_opts, "-cp", classpath, *args]

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or kafka_cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 60.0) -> LocalKafka:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to answer (a cluster's nodes are
        launched together: a controller quorum needs a majority of them up)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._choose_ports()
        config = self._write_config()
        self._format_storage(config)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> LocalKafka:
        """Until the broker answers a metadata request; stop it and raise if it does not."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"Kafka exited at start; see {self.log_file}:\n{self._log_tail()}"
                )
            if wait_for_broker(self.bootstrap, timeout=2.0):
                self.started_at = time.monotonic()
                return self
        self.stop()
        raise BrokerError(f"Kafka did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def kafka_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with "-" (the storage tool would read it as an option; Kafka's own ``Uuid.randomUuid``
    draws again in that case, 1 time in 64)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
