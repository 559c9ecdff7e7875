"""Reading the control topic: once to its end, or following it on a thread.

The control topic has one partition (a total order of changes). ``read_control_state``
folds it from offset 0 to its current end into a ``ControlState`` (for the CLI's
operator commands). ``ControlFollower`` keeps a ``ControlState`` current on a thread and
lets writers wait until an offset has been applied (the control and results services).
Each message is handled apart: one that cannot be read as a control event, or that the
projection cannot apply, is quarantined (``ControlState.quarantine``): logged, counted,
and shown to the tenant it names; the follower goes on with the next one. No exception
from one event stops a follower: the rest of the log must stay usable for every tenant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from liftstream.errors import PlatformUnavailableError
from schemas.control import ControlEvent, parse_control_event
from schemas.errors import FieldError, describe, field_errors
from services.control_domain.control_state import ControlState

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 1.0
#: Called with each applied event's offset, under the follower's lock.
AppliedHook = Callable[[int, ControlEvent, ControlState], None]


#: How long the broker holds a fetch that finds nothing new (ms). A new event still comes
#: back at once (the broker answers a held fetch as soon as there is data); a longer wait
#: only means fewer empty round trips while nothing changes.
FETCH_MAX_WAIT_MS = 50


def _consumer(bootstrap: str, client_id: str, fetch_max_wait_ms: int) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


class UnreadableControlEvent(ValueError):
    """A message that is not a valid control event; ``problems`` name each field."""

    def __init__(self, problems: list[FieldError]) -> None:
        self.problems = problems
        super().__init__(describe(problems))


def decode_control_event(value: bytes | None) -> ControlEvent:
    """The control event in a message, exactly as every follower reads it, or
    ``UnreadableControlEvent`` (the control service checks its writes with this)."""
    if value is None:
        raise UnreadableControlEvent(
            [FieldError(field="", reason="an empty message (a tombstone) is not a control event")]
        )
    try:
        return parse_control_event(value)
    except ValidationError as error:
        raise UnreadableControlEvent(field_errors(error)) from None


def apply_message(
    state: ControlState, offset: int, key: bytes | None, value: bytes | None
) -> ControlEvent | None:
    """Fold one message into ``state``; None (and the message quarantined) if it cannot be
    read or applied. Never raises because of the message."""
    try:
        event = decode_control_event(value)
        state.apply(offset, event)
    except Exception as error:  # one event must never stop a follower
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        state.quarantine(offset, key, value, reason)
        log.warning("control event at offset %d was quarantined: %s", offset, reason[:1000])
        return None
    return event


def read_control_state(bootstrap: str, topic: str, timeout_s: float = 30.0) -> ControlState:
    """The projection of the whole control topic as it is now."""
    state = ControlState()
    partition = TopicPartition(topic, 0)
    try:
        consumer = _consumer(bootstrap, "liftstream-cli-control", FETCH_MAX_WAIT_MS)
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
                    apply_message(state, record.offset, record.key, record.value)
                    state.next_offset = record.offset + 1
        return state
    finally:
        consumer.close()


class ControlProjection:
    """A ``ControlState`` fed one message at a time, which writers can wait on.

    Read it under ``lock``; ``wait_until_applied(offset)`` blocks until the event at
    ``offset`` is in the state; ``wait_until_caught_up`` until the log's end as of the
    last ``expect_end`` is. ``on_applied`` runs after each event (under the lock). Fed by
    ``ControlFollower``'s thread or by a Faust agent (the rollout controller).
    """

    def __init__(self, on_applied: AppliedHook | None = None) -> None:
        self.state = ControlState()
        self.lock = threading.RLock()
        self._applied = threading.Condition(self.lock)
        self._on_applied = on_applied
        self._caught_up = threading.Event()
        self._end = 0
        self.error: str | None = None
        #: Errors of the ``on_applied`` hook (logged; the event stays applied).
        self.hook_errors = 0

    @property
    def quarantined(self) -> int:
        """Events skipped because they could not be read or applied."""
        return self.state.quarantined_count

    @property
    def end(self) -> int:
        """The log's end as of the last ``expect_end``."""
        return self._end

    def wait_until_caught_up(self, timeout: float) -> bool:
        """True once the log's end (as of the last ``expect_end``) has been applied."""
        return self._caught_up.wait(timeout)

    def wait_until_applied(self, offset: int, timeout: float) -> bool:
        with self._applied:
            return self._applied.wait_for(lambda: self.state.next_offset > offset, timeout)

    def expect_end(self, end: int) -> None:
        """The log ends at ``end`` now: caught up once every offset below it is applied."""
        with self._applied:
            self._end = end
            if self.state.next_offset >= end:
                self._caught_up.set()
            else:
                self._caught_up.clear()

    def apply(self, records: Iterable[Any]) -> None:
        """Fold Kafka records (``offset``, ``key``, ``value``) in order; those below the
        state's next offset (already applied) are skipped."""
        with self._applied:
            for record in records:
                offset: int = record.offset
                if offset < self.state.next_offset:
                    continue
                event = apply_message(self.state, offset, record.key, record.value)
                self.state.next_offset = max(self.state.next_offset, offset + 1)
                if event is not None and self._on_applied is not None:
                    try:
                        self._on_applied(offset, event, self.state)
                    except Exception:
                        self.hook_errors += 1
                        log.exception("after applying control event %d", offset)
            if self.state.next_offset >= self._end:
                self._caught_up.set()
            self._applied.notify_all()


class ControlFollower(ControlProjection):
    """A ``ControlProjection`` kept current from the control topic by a background thread.

    ``fetch_max_wait_ms``: see ``FETCH_MAX_WAIT_MS``.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        client_id: str,
        on_applied: AppliedHook | None = None,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    ) -> None:
        super().__init__(on_applied)
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._bootstrap = bootstrap
        self._topic = topic
        self._client_id = client_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as error:
                self.error = f"{type(error).__name__}: {error}"
                log.exception("following the control topic failed; retrying")
                self._stop.wait(RETRY_PAUSE_S)

    def _follow(self) -> None:
        consumer = _consumer(self._bootstrap, self._client_id, self._fetch_max_wait_ms)
        try:
            partition = TopicPartition(self._topic, 0)
            while not consumer.partitions_for_topic(self._topic):
                self.error = f"the control topic {self._topic} does not exist yet"
                if self._stop.wait(RETRY_PAUSE_S):
                    return
            consumer.assign([partition])
            consumer.seek(partition, self.state.next_offset)
            if not self._caught_up.is_set():
                self.expect_end(consumer.end_offsets([partition])[partition])
            self.error = None
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    self.apply(records)
        finally:
            consumer.close()
