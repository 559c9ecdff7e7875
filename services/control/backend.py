"""Where the control API reads the projection and writes events.

``KafkaBackend`` writes each event to the control topic (acks from all replicas) and
returns once the service's own follower has applied it, so a client that got an answer
reads its change from any endpoint straight away. Writes are serialised: a command is
checked against the projection and written before the next one is checked.
"""

from __future__ import annotations

import threading
from typing import Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from schemas.control import ControlEvent
from services.control_domain.control_log import ControlFollower
from services.control_domain.control_state import ControlState
from services.http_guard import ServiceUnavailable

SEND_TIMEOUT_S = 15.0
APPLY_TIMEOUT_S = 15.0


class BackendUnavailable(ServiceUnavailable):
    """The event could not be stored or was not applied in time (503, retry)."""


class ControlBackend(Protocol):
    state: ControlState
    #: Held while reading ``state``.
    lock: threading.RLock
    #: Held from checking a command to its event being applied.
    write_lock: threading.Lock

    def publish(self, event: ControlEvent, payload: bytes) -> int:
        """Store ``payload`` (the event, checked readable); return its offset once the
        projection has applied it."""

    def healthy(self) -> str | None:
        """None when healthy, else why not."""


class KafkaBackend:
    def __init__(self, follower: ControlFollower, producer: KafkaProducer, topic: str) -> None:
        self._follower = follower
        self._producer = producer
        self._topic = topic
        self.state = follower.state
        self.lock = follower.lock
        self.write_lock = threading.Lock()

    def publish(self, event: ControlEvent, payload: bytes) -> int:
        try:
            metadata = self._producer.send(self._topic, key=event.partition_key, value=payload).get(
                timeout=SEND_TIMEOUT_S
            )
        except KafkaError as error:
            raise BackendUnavailable(
                "the control topic did not store the change in time; nothing was changed, retry",
                f"{type(error).__name__}: {error}",
            ) from error
        offset = int(metadata.offset)
        if not self._follower.wait_until_applied(offset, APPLY_TIMEOUT_S):
            raise BackendUnavailable(
                f"the change was stored but not applied within {APPLY_TIMEOUT_S:.0f}s; it "
                "will be, retry the read",
                f"offset {offset}",
            )
        return offset

    def healthy(self) -> str | None:
        """Why the service cannot serve, in words safe to show anyone (no addresses or
        settings: ``follower.error`` stays in the log)."""
        if not self._follower.running:
            return "the control topic follower stopped"
        if not self._follower.wait_until_caught_up(0):
            return "still reading the control topic"
        if self._follower.error is not None:
            return "following the control topic failed; the service log has the detail"
        return None
