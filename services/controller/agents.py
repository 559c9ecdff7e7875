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
(``Controller.run_once``). When the active member dies, the group gives everything to a
standby after the session timeout; it reads the logs and continues. A decision's id is a
function of (tenant, rollout, plan version, check index) and the projection ignores a
check index it has, so an old leader finishing a check while a new one starts cannot
repeat or lose a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from kafka import KafkaConsumer, TopicPartition

from services.control_domain.control_log import ControlProjection
from services.controller.aggregates import AggregateView
from services.controller.assignor import SingleActiveAssignor
from services.controller.checks import Controller
from services.faust_app import faust_app

log = logging.getLogger(__name__)

#: Seconds between two seeks of one partition to the same place.
RESEEK_S = 1.0


def end_offsets(bootstrap: str, places: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Where each (topic, partition) ends now (blocking: run it in a thread)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, client_id="liftstream-controller-ends"
    )
    try:
        wanted = [TopicPartition(topic, partition) for topic, partition in places]
        ends = consumer.end_offsets(wanted) if wanted else {}
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}
    finally:
        consumer.close()


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
        self._seeking: dict[tuple[str, int], float] = {}
        self._ends: KafkaConsumer | None = None
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

    async def _seek(self, topic: str, partition: int, offset: int) -> None:
        """To the next offset not applied yet (once a ``RESEEK_S``: a seek can lose a
        race with messages Faust fetched already)."""
        place = (topic, partition)
        last = self._seeking.get(place)
        if last is None or time.monotonic() - last > RESEEK_S:
            self._seeking[place] = time.monotonic()
            await self.app.consumer.seek(TP(topic, partition), offset)

    async def _follow_control(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            expected = self.projection.state.next_offset
            if message.offset != expected:
                # Below: applied already (Faust starts a partition it is given at 0).
                # Above: messages Faust cleared from the agents' buffers in a rebalance;
                # the control log keeps every offset, so they are read again, in order.
                if message.offset > expected:
                    log.info("control log at %d, the projection needs %d", message.offset, expected)
                await self._seek(message.topic, message.partition, expected)
                continue
            self.projection.apply([message])

    async def _follow_view(self, stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            if not self.view.apply(m.topic, m.partition, m.offset, m.value, m.timestamp * 1000):
                expected = self.view.next_offset(m.topic, m.partition)
                await self._seek(m.topic, m.partition, expected)

    async def _on_revoked(self, app: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.active = self.checking = False

    async def _on_assigned(self, app: Any, assigned: Iterable[Any], **_: Any) -> None:
        places = [(tp.topic, tp.partition) for tp in assigned]
        self._seeking.clear()
        if (self.control_topic, 0) not in places:
            log.info("standby: another controller is active")
            return
        try:
            ends = await asyncio.to_thread(end_offsets, self.bootstrap, places)
        except Exception as error:
            self.projection.error = f"{type(error).__name__}: {error}"
            log.exception("reading where the topics end failed")
            await self.app.crash(error)
            return
        self.projection.expect_end(ends.pop((self.control_topic, 0)))
        self.view.expect_ends(ends)
        self.active = True
        log.info("active: reading the control log and aggregates to their ends")

    async def _tick(self) -> None:
        if not self.active:
            return
        if not self.checking:
            if not (self.projection.wait_until_caught_up(0) and self.view.caught_up):
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
        if self._ends is None:
            self._ends = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                client_id="liftstream-controller-ends",
            )
        partition = TopicPartition(self.control_topic, 0)
        end = int(self._ends.end_offsets([partition])[partition])
        if end and not self.projection.wait_until_applied(end - 1, 5.0):
            return
        self.controller.run_once()


def run_faust(app: faust.App) -> None:
    """Run ``app`` until SIGTERM/SIGINT."""
    # A check longer than a tick is normal (the next tick waits for it): not a warning.
    logging.getLogger("mode.timers").setLevel(logging.ERROR)
    with contextlib.suppress(SystemExit):  # mode's Worker exits when it stops
        # stdout stays stdout: `controller ready at URL` is what `liftstream up` waits for.
        worker = faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
