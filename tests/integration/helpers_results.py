"""Helpers for tests that run the results service against the real broker.

- ``ResultsService``: ``python -m services.results --port 0 --db PATH`` as a subprocess
  with the current environment (set by the ``platform_settings`` fixture); ``start``
  waits until it prints its URL and answers ``/healthz``; ``stop`` sends SIGTERM (then
  SIGKILL) and returns the exit code. Also a context manager.
- ``ResultsService.wait_until_loaded``: polls ``/v1/progress`` (with ``admin_key``) until
  the loader has reached the given end offsets.
- ``produce``: send (key, value) pairs to a topic with kafka-python and flush.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer

from tests.integration.helpers_services import KEY_NOT_KNOWN_YET, ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


class ResultsService(ServiceProcess):
    """One results service process writing ``db_path``; its output goes to ``log_path``."""

    def __init__(
        self,
        db_path: Path,
        log_path: Path | None = None,
        api_key: str | None = None,
        admin_key: str | None = None,
    ) -> None:
        super().__init__(
            "services.results",
            "results service",
            ["--db", str(db_path)],
            log_path or db_path.with_name(f"{db_path.stem}-results.log"),
        )
        self.db_path = db_path
        self.api_key = api_key
        #: For ``/v1/progress`` (every tenant's topics: an admin key); else ``api_key``.
        self.admin_key = admin_key

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
            answer = self.get("/v1/progress", self.admin_key)
            if answer.status_code in KEY_NOT_KNOWN_YET and time.monotonic() < deadline:
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


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) pairs to ``topic`` in order and wait until all are acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in messages:
            producer.send(topic, value=value, key=key)
        producer.flush()
    finally:
        producer.close()
