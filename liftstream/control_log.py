"""Reading the control topic: once to its end, or following it on a thread.

The control topic has one partition (a total order of changes). ``read_control_state``
folds it from offset 0 to its current end into a ``ControlState`` (for the CLI's
operator commands). ``ControlFollower`` keeps a ``ControlState`` current on a thread and
lets writers wait until an offset has been applied (the control and results services).
A message that is not a valid control event is logged and skipped, never fatal: the
rest of the log must stay usable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from liftstream.control_state import ControlState
from liftstream.errors import PlatformUnavailableError
from schemas.control import ControlEvent, parse_control_event
from schemas.deadletter import describe, field_errors

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 1.0
#: Called with each applied event's offset, under the follower's lock.
AppliedHook = Callable[[int, ControlEvent, ControlState], None]


def _consumer(bootstrap: str, client_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=50,
    )


def _parse(offset: int, value: bytes | None) -> ControlEvent | None:
    if value is None:
        return None
    try:
        return parse_control_event(value)
    except ValidationError as error:
        log.warning(
            "control event at offset %d is invalid and was skipped: %s",
            offset,
            describe(field_errors(error)),
        )
        return None


def read_control_state(bootstrap: str, topic: str, timeout_s: float = 30.0) -> ControlState:
    """The projection of the whole control topic as it is now."""
    state = ControlState()
    partition = TopicPartition(topic, 0)
    try:
        consumer = _consumer(bootstrap, "liftstream-cli-control")
    except KafkaError as error:
        raise PlatformUnavailableError(f"cannot reach Kafka at {bootstrap}: {error}") from error
    try:
        if not consumer.partitions_for_topic(topic):
            raise PlatformUnavailableError(
                f"the control topic {topic} does not exist on {bootstrap}; `liftstream up` "
                "creates the platform's topics"
            )
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        deadline = time.monotonic() + timeout_s
        while consumer.position(partition) < end:
            if time.monotonic() > deadline:
                raise PlatformUnavailableError(
                    f"reading the control topic {topic} took over {timeout_s:.0f}s"
                )
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = _parse(record.offset, record.value)
                    if event is not None:
                        state.apply(record.offset, event)
                    state.next_offset = record.offset + 1
        return state
    finally:
        consumer.close()


class ControlFollower:
    """A ``ControlState`` kept current from the control topic by a background thread.

    Read it under ``lock``; ``wait_until_applied(offset)`` blocks until the event at
    ``offset`` is in the state. ``on_applied`` runs after each event (under the lock).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        client_id: str,
        on_applied: AppliedHook | None = None,
    ) -> None:
        self.state = ControlState()
        self.lock = threading.RLock()
        self._applied = threading.Condition(self.lock)
        self._bootstrap = bootstrap
        self._topic = topic
        self._client_id = client_id
        self._on_applied = on_applied
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-follower", daemon=True)
        self.error: str | None = None
        self.skipped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_until_caught_up(self, timeout: float) -> bool:
        """True once the log's end as of start-up has been applied."""
        return self._caught_up.wait(timeout)

    def wait_until_applied(self, offset: int, timeout: float) -> bool:
        with self._applied:
            return self._applied.wait_for(lambda: self.state.next_offset > offset, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as error:
                self.error = f"{type(error).__name__}: {error}"
                log.exception("following the control topic failed; retrying")
                self._stop.wait(RETRY_PAUSE_S)

    def _follow(self) -> None:
        consumer = _consumer(self._bootstrap, self._client_id)
        try:
            partition = TopicPartition(self._topic, 0)
            while not consumer.partitions_for_topic(self._topic):
                self.error = f"the control topic {self._topic} does not exist yet"
                if self._stop.wait(RETRY_PAUSE_S):
                    return
            consumer.assign([partition])
            consumer.seek(partition, self.state.next_offset)
            end = consumer.end_offsets([partition])[partition]
            if self.state.next_offset >= end:
                self._caught_up.set()
            self.error = None
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    self._apply(records)
                if not self._caught_up.is_set() and self.state.next_offset >= end:
                    self._caught_up.set()
        finally:
            consumer.close()

    def _apply(self, records: list[object]) -> None:
        with self._applied:
            for record in records:
                offset: int = record.offset  # type: ignore[attr-defined]
                event = _parse(offset, record.value)  # type: ignore[attr-defined]
                if event is None:
                    self.skipped += 1
                    self.state.next_offset = offset + 1
                    continue
                self.state.apply(offset, event)
                if self._on_applied is not None:
                    self._on_applied(offset, event, self.state)
            self._applied.notify_all()
