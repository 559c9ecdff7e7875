"""Helpers for tests that run the results service against the real broker.

- ``ResultsService``: ``python -m services.results --port 0 --db PATH`` as a subprocess
  with the current environment (set by the ``platform_settings`` fixture); ``start``
  waits until it prints its URL and answers ``/healthz``; ``stop`` sends SIGTERM (then
  SIGKILL) and returns the exit code. Also a context manager.
- ``ResultsService.wait_until_loaded``: polls ``/v1/progress`` until the loader has
  reached the given end offsets.
- ``produce``: send (key, value) pairs to a topic with kafka-python and flush.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
from kafka import KafkaProducer

REPO_ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"results service ready at (http://\S+)")


class ResultsService:
    """One results service process writing ``db_path``; its output goes to ``log_path``."""

    def __init__(
        self, db_path: Path, log_path: Path | None = None, api_key: str | None = None
    ) -> None:
        self.db_path = db_path
        self.api_key = api_key
        self.log_path = log_path or db_path.with_name(f"{db_path.stem}-results.log")
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ResultsService:
        """Start the process; return once it prints its URL and answers ``/healthz``."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.results", "--port", "0", "--db", str(self.db_path)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.process.poll() is not None:
                raise RuntimeError(f"results service exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"results service did not start:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(offset)
                match = _READY.search(log.read().decode(errors="replace"))
            if match:
                self.url = match.group(1)
            else:
                time.sleep(0.1)
        while self.get("/healthz").status_code != httpx.codes.OK:
            if time.monotonic() > deadline:
                raise TimeoutError(f"results service is not healthy:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, api_key: str | None = None) -> httpx.Response:
        key = api_key or self.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{self.url}{path}", timeout=10.0, headers=headers)

    def json(self, path: str) -> Any:
        """The body of a GET that must succeed."""
        response = self.get(path)
        assert response.status_code == httpx.codes.OK, f"GET {path}: {response.text}"
        return response.json()

    def wait_until_loaded(
        self, end: Mapping[str, Mapping[int, int]], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll ``/v1/progress`` until every partition is loaded up to ``end``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get("/v1/progress")
            if answer.status_code == httpx.codes.UNAUTHORIZED and time.monotonic() < deadline:
                time.sleep(0.2)  # the service learns keys from the control topic
                continue
            assert answer.status_code == httpx.codes.OK, f"GET /v1/progress: {answer.text}"
            progress: dict[str, Any] = answer.json()
            loaded = progress["loaded"]
            behind = {
                f"{topic}/{partition}": (loaded.get(topic, {}).get(str(partition), 0), offset)
                for topic, partitions in end.items()
                for partition, offset in partitions.items()
                if loaded.get(topic, {}).get(str(partition), 0) < offset
            }
            if not behind:
                return progress
            if time.monotonic() > deadline or not self.alive():
                raise TimeoutError(
                    f"loader still behind (loaded, end): {behind}\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.url = ""
        return self.process.returncode

    def __enter__(self) -> ResultsService:
        return self.start() if not self.alive() else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) pairs to ``topic`` in order and wait until all are acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in messages:
            producer.send(topic, value=value, key=key)
        producer.flush()
    finally:
        producer.close()
