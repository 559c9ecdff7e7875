"""The controller as a ``faust.App``: agents on the control, aggregates and dead-letter
topics, a timer for the checks, and ``SingleActiveAssignor`` for high availability.

Run two controllers (or more) in one group (``<namespace>-controller``): one is active,
the others wait. The active one is given every partition (``assignor``): its control agent
folds the control log into the ``ControlProjection`` from offset 0 (or from where its
projection ends, after a rebalance: the log only grows), its other agents fold the
aggregates and dead letters into the ``AggregateView``. Nothing is ever committed (the
topics' agents do not ack), so each start reads everything again, as a restart always did.
The check timer runs on every member and checks only on the active one, once its
projection and view have read what the topics held when it was given them; a check calls
the pure ``decide`` and waits until the projection applied its decision
(``Controller.run_once``).

Faust can drop messages it fetched while a rebalance holds its flow (seen: the first
control event after a takeover, never delivered again, and a seek back did not bring it).
The projection must not skip an event, so a hole is read directly (``RangeReader``, a
plain consumer): the control agent reads what lies between the projection's end and a
message past it, and the timer, before each check, what lies between the projection's
end and the log's end if the agent has not brought it within ``FILL_AFTER_S`` (an event
dropped at the log's end has no later message to reveal it). The view's partitions are
filled the same way while catching up, if Faust brings nothing for ``FILL_AFTER_S``.

When the active member dies, the group gives everything to a standby after the session
timeout; it reads the logs and continues. A decision's id is a function of (tenant,
rollout, plan version, check index) and the projection ignores a check index it has, so
an old leader finishing a check while a new one starts cannot repeat or lose a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faust
from kafka import KafkaConsumer, TopicPartition

from services.control_domain.control_log import ControlProjection
from services.controller.aggregates import AggregateView
from services.controller.assignor import SingleActiveAssignor
from services.controller.checks import Controller
from services.faust_app import faust_app

log = logging.getLogger(__name__)

#: Seconds a member waits for Faust to deliver what the log holds before reading it itself.
FILL_AFTER_S = 1.0
#: Seconds one direct read of a range may take.
READ_TIMEOUT_S = 30.0


class RangeReader:
    """Reads partitions directly (a plain consumer, no group), one caller at a time:
    where they end, and the records of an offset range Faust did not deliver."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer: KafkaConsumer | None = None
        self.lock = threading.Lock()
        #: Records read this way (not delivered by Faust).
        self.filled = 0

    def _open(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=50,
                client_id="liftstream-controller-reader",
            )
        return self._consumer

    def ends(self, places: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where each (topic, partition) ends now."""
        with self.lock:
            wanted = [TopicPartition(topic, partition) for topic, partition in places]
            found = self._open().end_offsets(wanted) if wanted else {}
            return {(tp.topic, tp.partition): int(end) for tp, end in found.items()}

    def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The records of offsets ``start`` to ``end`` (excluded), in order; fewer if the
        read times out (or the range was compacted or deleted)."""
        with self.lock:
            consumer = self._open()
            place = TopicPartition(topic, partition)
            consumer.assign([place])
            consumer.seek(place, start)
            records: list[Any] = []
            deadline = time.monotonic() + READ_TIMEOUT_S
            while consumer.position(place) < end and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    records += [record for record in batch if start <= record.offset < end]
            self.filled += len(records)
            return records

    def close(self) -> None:
        with self.lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class ControllerAgents:
    """The Faust app feeding ``controller``'s projection and view, and its check timer."""

    def __init__(
        self,
        controller: Controller,
        projection: ControlProjection,
        view: AggregateView,
        *,
        bootstrap: str,
        group: str,
        control_topic: str,
        aggregates_topic: str,
        deadletter_topic: str,
        datadir: Path,
        tick_s: float,
    ) -> None:
        self.controller = controller
        self.projection = projection
        self.view = view
        self.bootstrap = bootstrap
        self.control_topic = control_topic
        self.app = faust_app(
            group,
            bootstrap,
            datadir,
            PartitionAssignor=SingleActiveAssignor,
        )
        #: Whether this member holds the control topic (and so every input): the leader.
        self.active = False
        self.checking = False
        self.took_over_at: float | None = None
        self.reader = RangeReader(bootstrap)
        self._assigned_at = 0.0
        #: The view's positions when the timer last looked, and since when unchanged.
        self._view_seen: tuple[dict[tuple[str, int], int], float] = ({}, 0.0)
        control = self.app.topic(control_topic, acks=False)
        self.app.agent(control, name="control")(self._follow_control)
        for topic in (aggregates_topic, deadletter_topic):
            source = self.app.topic(topic, acks=False)
            self.app.agent(source, name=f"read-{topic}")(self._follow_view)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.timer(tick_s)(self._tick)

    @property
    def role(self) -> str:
        if not self.active:
            return "standby"
        return "active" if self.checking else "catching up"

    def _apply_control(self, records: Sequence[Any]) -> None:
        """Apply each record that is the projection's next offset: below it, applied
        already (Faust starts a partition it is given at 0); above it, a hole to read
        first (the control log keeps every offset, and the projection skips none)."""
        with self.projection.lock:
            for record in records:
                if record.offset == self.projection.state.next_offset:
                    self.projection.apply([record])

    def _fill_control(self, end: int) -> None:
        """Read directly what the projection lacks below ``end`` (blocking)."""
        start = self.projection.state.next_offset
        if start >= end:
            return
        log.info("reading control events %d to %d directly (not from Faust)", start, end - 1)
        self._apply_control(self.reader.read(self.control_topic, 0, start, end))

    async def _follow_control(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            if message.offset > self.projection.state.next_offset:
                await asyncio.to_thread(self._fill_control, message.offset)
            self._apply_control([message])

    async def _follow_view(self, stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            self.view.apply(m.topic, m.partition, m.offset, m.value, m.timestamp * 1000)

    def _fill_view(self) -> None:
        """Read directly, to their ends at assignment, the view's partitions Faust has
        brought nothing of for ``FILL_AFTER_S`` (blocking)."""
        positions, since = self._view_seen
        now_positions = self.view.positions()
        if now_positions != positions:
            self._view_seen = (now_positions, time.monotonic())
            return
        if time.monotonic() - since < FILL_AFTER_S:
            return
        for (topic, partition), end in self.view.lagging().items():
            start = self.view.next_offset(topic, partition)
            log.info("reading %s[%d] %d to %d directly", topic, partition, start, end - 1)
            for r in self.reader.read(topic, partition, start, end):
                self.view.apply(topic, partition, r.offset, r.value, r.timestamp)

    async def _on_revoked(self, app: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.active = self.checking = False

    async def _on_assigned(self, app: Any, assigned: Iterable[Any], **_: Any) -> None:
        places = [(tp.topic, tp.partition) for tp in assigned]
        if (self.control_topic, 0) not in places:
            log.info("standby: another controller is active")
            return
        try:
            ends = await asyncio.to_thread(self.reader.ends, places)
        except Exception as error:
            self.projection.error = f"{type(error).__name__}: {error}"
            log.exception("reading where the topics end failed")
            await self.app.crash(error)
            return
        self.projection.expect_end(ends.pop((self.control_topic, 0)))
        self.view.expect_ends(ends)
        self._view_seen = ({}, time.monotonic())
        self.active = True
        log.info("active: reading the control log and aggregates to their ends")

    async def _tick(self) -> None:
        if not self.active:
            return
        if not self.checking:
            if not self.projection.wait_until_caught_up(0):
                await asyncio.to_thread(self._catch_up_control)
                return
            if not self.view.caught_up:
                await asyncio.to_thread(self._fill_view)
                return
            self.checking = True
            self.took_over_at = time.time()
            log.info("active: the control log is read to its end; checking rollouts")
        try:
            await asyncio.to_thread(self._check)
        except Exception:
            log.exception("controller loop")

    def _check(self) -> None:
        """Checks once the projection has applied the control log as it ends now: a
        decision then follows, in the log, every event its view holds (replay rebuilds
        the view at the decision's offset). The agent can lag behind the log on a busy
        machine; without this an approval already in the log could be missed."""
        end = self.reader.ends([(self.control_topic, 0)])[(self.control_topic, 0)]
        if end and not self.projection.wait_until_applied(end - 1, FILL_AFTER_S):
            self._fill_control(end)
            if self.projection.state.next_offset < end:
                return
        self.controller.run_once()

    def _catch_up_control(self) -> None:
        """While catching up: the log's end at assignment read directly if Faust has
        brought nothing for ``FILL_AFTER_S`` (an event it dropped at the end)."""
        before = self.projection.state.next_offset
        if not self.projection.wait_until_applied(before, FILL_AFTER_S):
            self._fill_control(self.projection.end)


def run_faust(app: faust.App) -> None:
    """Run ``app`` until SIGTERM/SIGINT."""
    # A check longer than a tick is normal (the next tick waits for it): not a warning.
    logging.getLogger("mode.timers").setLevel(logging.ERROR)
    with contextlib.suppress(SystemExit):  # mode's Worker exits when it stops
        # stdout stays stdout: `controller ready at URL` is what `liftstream up` waits for.
        worker = faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
