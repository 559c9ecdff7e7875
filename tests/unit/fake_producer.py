"""A stand-in for kafka-python's producer in the SDK's unit tests: it records each send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SendFuture:
    def __init__(self) -> None:
        self.errbacks: list[Callable[[BaseException], Any]] = []

    def add_errback(self, callback: Callable[[BaseException], Any]) -> SendFuture:
        self.errbacks.append(callback)
        return self


class RecordingProducer:
    """Records what was sent; ``fail(error)`` makes every pending send fail on flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.pending: list[SendFuture] = []
        self.failure: BaseException | None = None
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> SendFuture:
        self.sent.append((topic, key, value))
        future = SendFuture()
        self.pending.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        for future in self.pending:
            if self.failure is not None:
                for errback in future.errbacks:
                    errback(self.failure)
        self.pending.clear()

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
