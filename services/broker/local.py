"""Start and stop a single-node Kafka broker from the jars that Maven Central serves.

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
    """One broker process whose data lives in ``data_dir``."""

    data_dir: Path
    broker_port: int = 0
    controller_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: ``time.monotonic()`` when the broker last answered after a start.
    started_at: float = field(default=0.0, repr=False)

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
        config.write_text(
            template.format(
                broker_port=self.broker_port,
                controller_port=self.controller_port,
                log_dir=self.data_dir / "log",
            )
        )
        return config

    def _java(self, *args: str) -> list[str]:
        classpath = str(ensure_broker_jars() / "*")
        logging_opts = ["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
        return ["java", *HEAP_OPTS, *logging_opts, "-cp", classpath, *args]

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = _kafka_cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 60.0) -> LocalKafka:
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


def _kafka_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with "-" (the storage tool would read it as an option; Kafka's own ``Uuid.randomUuid``
    draws again in that case, 1 time in 64)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
