"""The control API on an in-memory backend: each event applied to the projection as it
is published, so every answer is checked without Kafka (``control_api`` fixture in
``tests/unit/conftest.py``)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from schemas.control import ControlEvent
from services.control_domain.control_state import ControlState


class MemoryBackend:
    def __init__(self) -> None:
        self.state = ControlState()
        self.lock = threading.RLock()
        self.write_lock = threading.Lock()
        self.events: list[ControlEvent] = []

    def publish(self, event: ControlEvent, payload: bytes = b"") -> int:
        offset = len(self.events)
        with self.lock:
            self.state.apply(offset, event)
        self.events.append(event)
        return offset

    def healthy(self) -> str | None:
        return None


def call(
    client: TestClient, headers: dict[str, str], method: str, path: str, body: Any = None
) -> Any:
    return client.request(method, path, json=body, headers={"Authorization": headers["admin"]})
