"""A stand-in for kafka-python's producer in the SDK's unit tests: it records each send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class SendFuture:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], Any]] = []
        self.errbacks: list[Callable[[BaseException], Any]] = []

    def add_callback(self, callback: Callable[[Any], Any]) -> SendFuture:
        self.callbacks.append(callback)
        return self

    def add_errback(self, callback: Callable[[BaseException], Any]) -> SendFuture:
        self.errbacks.append(callback)
        return self


class RecordingProducer:
    """Records what was sent; ``fail(error)`` makes every pending send fail on flush."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        #: (topic, key, value, partition) of each message.
        self.messages: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.pending: list[SendFuture] = []
        self.failure: BaseException | None = None
        self.closed = False

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> SendFuture:
        self.messages.append((topic, key, value, partition))
        future = SendFuture()
        self.pending.append(future)
        return future

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def flush(self, timeout: float | None = None) -> None:
        for future in self.pending:
            if self.failure is not None:
                for errback in future.errbacks:
                    errback(self.failure)
            else:
                for callback in future.callbacks:
                    callback(None)
        self.pending.clear()

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def events(self) -> list[tuple[str, dict[str, Any], int | None]]:
        """(topic, event as JSON, partition) of every event sent, batches expanded."""
        found = []
        for topic, _, value, partition in self.messages:
            decoded = json.loads(value or b"null")
            for event in decoded if isinstance(decoded, list) else [decoded]:
                found.append((topic, event, partition))
        return found
