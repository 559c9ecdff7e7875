"""The stream worker as a ``faust.App`` (faust-streaming): agents on the exposure and
outcome topics, Faust's consumer group and rebalance signals, the same processor,
snapshots and publication as ``worker.StreamWorker``.

Each agent takes a message (one event or a batch, ``schemas.events``) from its stream
and, with it, every message already waiting in the stream's buffer (up to
``DRAIN_MESSAGES``), and applies each partition's run of them in one call of the compiled
per-event path (``StreamProcessor.handle_batch``), as the aiokafka worker applies a
fetch: Faust's per-message cost is then its conductor's hand-over alone, and batch
messages make that small. Faust's per-event sensors are off (``_QuietMonitor``).

The snapshot layers and their manifest (``snapshots``) stay the exactly-once mechanism,
driven from Faust's partition signals: ``on_partitions_revoked`` publishes and snapshots
the partitions that may move, ``on_partitions_assigned`` restores new ones. Faust's own
acking is off for the event topics: it keeps every acknowledged offset in a list and a
set until it commits (about 75 MB per million messages), and its commits would run ahead
of the snapshots. As in ``worker.StreamWorker``, the offsets a snapshot covers are
committed after it is written, so Faust positions a partition it is given where its
snapshot ends. Each partition's messages are still compared with the next offset its
restored states lack: those before it are skipped (already in the states; the consumer
seeks past them) and a gap (a snapshot written but not committed, messages cleared from
the agents' buffers in a rebalance) makes the consumer seek back to it, so every event is
applied to the states exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import faust
import uvloop
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faust.sensors import Monitor
from faust.tables import TableManager
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP
from faust.web.drivers.aiohttp import Web as FaustAiohttpWeb

from liftstream.settings import Settings
from services.faust_app import faust_app
from services.kafka_outage import outage_tolerance_s, retry_async
from services.readiness import broker_answers
from services.stream.definitions import MetricDefinitions
from services.stream.health import announce, routes
from services.stream.holes import HoleProbe
from services.stream.snapshots import SnapshotStore
from services.stream.worker import CONTROL_WAIT_S, StreamWorker

log = logging.getLogger(__name__)

#: Seconds after which a partition still missing the offset it was sought back to is
#: sought again.
RESEEK_S = 1.0
#: Messages a partition must be behind its states before the consumer seeks ahead.
SEEK_AHEAD_MIN = 10_000
#: Messages an agent takes from its stream's buffer per turn, at most (with batch messages
#: of 100 events, about 0.2 s of work on this project's machine between two looks at the
#: publication and snapshot ticks).
DRAIN_MESSAGES = 256
#: Messages a Faust stream buffers per agent (its channel's queue).
STREAM_BUFFER = 4096
#: Bytes fetched per partition and request, and records per fetch: the aiokafka worker's.
FETCH_PARTITION_BYTES = 8 * 1024 * 1024
MAX_POLL_RECORDS = 10_000


class _QuietMonitor(Monitor):
    """Faust's ``Monitor`` without its per-message and per-event bookkeeping (counters,
    timestamps, a dict per event): nothing here reads it (Faust's statistics pages are
    off, acks are off so its livelock check does not look at stream times), and at tens of
    thousands of messages a second it is a share of the worker's time."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        return None


class _SnapshotCommits:
    """What ``StreamWorker`` asks of its consumer, for a Faust app: positions are decided
    per message (``FaustStreamWorker._apply``); the offsets the snapshots cover are
    committed through Faust's consumer (they position a partition's next owner)."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def seek_to_beginning(self, *partitions: Any) -> None:
        return None

    def seek(self, partition: Any, offset: int) -> None:
        return None

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit on the aiokafka consumer, in the thread Faust runs it in; an error is
        raised here (``StreamWorker.snapshot`` logs it), where Faust's own commit path
        would crash the app."""
        thread = self._app.consumer._thread  # type: ignore[attr-defined]

        async def commit() -> None:
            consumer = thread._ensure_consumer()
            assigned = consumer.assignment()  # aiokafka refuses others' partitions
            committable = {
                tp: OffsetAndMetadata(offset, "")
                for tp, offset in offsets.items()
                if tp in assigned
            }
            if committable:
                await consumer.commit(committable)

        await thread.call_thread(commit)

    def partitions_for_topic(self, topic: str) -> None:
        return None  # the catalog's partition count stands


class _ReadCommittedThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread reading ``read_committed``: any producer may write
    the event topics, transactional ones too, and an aborted transaction's events must
    not count. Faust reads ``read_committed`` only with ``processing_guarantee=
    "exactly_once"`` (its own transactions, which this app does not use); the end offset
    that lag figures use is then the last stable offset, as Faust's own exactly-once path
    has it."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands the level to its fetcher when the consumer starts (after this).
        consumer._isolation_level = "read_committed"
        return consumer

    def highwater(self, tp: TP) -> int:
        result: int = self._ensure_consumer().last_stable_offset(tp)
        return result


class _Consumer(AIOKafkaDriverConsumer):
    """Faust's aiokafka consumer handing a fetched message to the agents' buffers without
    Faust's per-message guard when nothing can make the hand-over wait.

    Faust's fetch loop (``Consumer._drain_messages``) awaits each message's hand-over
    (``Conductor.on_message``) in ``wait_first`` beside its flow-suspension event: four
    tasks made and three cancelled per message, so that a hand-over blocked on a full
    buffer or a suspended flow (a rebalance) is abandoned. That can only happen when a
    buffer is full or the flow is stopped: otherwise the hand-over completes without
    waiting, and this loop awaits it directly. The rest is Faust 0.15.3's loop."""

    #: The agents' stream buffers (set by the worker as its agents start); until then
    #: every hand-over takes Faust's guarded path.
    handover_queues: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handover_queues = []

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    def _handover_cannot_wait(self) -> bool:
        queues = self.handover_queues
        return (
            bool(queues)
            and not self.suspend_flow.is_set()
            and self.app.flow_control.is_active()
            and not any(queue.full() for queue in queues)
        )

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        cannot_wait = self._handover_cannot_wait
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if cannot_wait():
                                await callback(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class _Transport(AIOKafkaTransport):
    """Faust's aiokafka transport with ``_Consumer``."""

    Consumer = _Consumer


class _Web(FaustAiohttpWeb):
    """Faust's aiohttp web server, bound where the worker's settings say: Faust's own
    ``web_port`` setting refuses 0, and several workers on one host each take a free
    port, announced (``health.announce``) for the supervisor."""

    address: tuple[str, int] = ("127.0.0.1", 0)

    async def start_server(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, *self.address).start()
        host, port = self._runner.addresses[0][:2]
        announce(host, port)


class _TablelessManager(TableManager):
    """Faust's table manager for this app, which declares no table: table recovery (which
    then has nothing to do, but gates the consumer's subscription) starts at once rather
    than after Faust's fixed one-second wait for tables to be declared (a second of every
    start and restart)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _App(faust.App):
    """A ``faust.App`` serving the worker's endpoints (``health.routes``) on its web
    server, and nothing else of Faust's (its router, table and statistics pages are off)."""

    web_address: tuple[str, int] = ("127.0.0.1", 0)
    web_routes: tuple[web.RouteDef, ...] = ()

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> _Web:
        server = _Web(self)
        server.address = self.web_address
        return server

    def on_webserver_init(self, web: Any) -> None:
        web.web_app.add_routes(self.web_routes)


class FaustStreamWorker(StreamWorker):
    """``StreamWorker``'s state and publication, fed by Faust agents."""

    def __init__(
        self,
        settings: Settings,
        *,
        web_host: str = "127.0.0.1",
        web_port: int = 0,
        **intervals: float,
    ) -> None:
        super().__init__(settings, **intervals)
        self.app = faust_app(
            self.group_id,
            settings.bootstrap,
            Path(settings.home) / "faust" / self.group_id,
            app_class=_App,
            # The web server (started before the consumer, so liveness answers during a
            # long first restore) serves /healthz, /readyz and /metrics only.
            web_enabled=True,
            web_router_enabled=False,
            web_tables_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            web_metrics_enabled=False,
            TableManager=_TablelessManager,
            # The snapshots decide where a partition resumes: Faust's own commits (of acked
            # offsets) are off, the worker commits what its snapshots cover.
            broker_commit_interval=3600.0,
            broker_commit_every=1_000_000_000,
            stream_buffer_maxsize=STREAM_BUFFER,
            consumer_max_fetch_size=FETCH_PARTITION_BYTES,
            broker_max_poll_records=MAX_POLL_RECORDS,
            Monitor=_QuietMonitor,
        )
        self.app.web_address = (web_host, web_port)
        self.app.web_routes = tuple(routes(self))
        self._rewound: set[tuple[str, int]] = set()
        #: Places sought back to the offset their states need, and when.
        self._seeking: dict[tuple[str, int], float] = {}
        #: Places sought ahead past messages already in the states, and when.
        self._ahead: dict[tuple[str, int], float] = {}
        self._definitions: MetricDefinitions | None = None
        self._hole_probe = HoleProbe(settings.bootstrap, f"{self.group_id}-holes")
        #: Per place whose states end below its end offset: (next offset, end, checked).
        self._tails: dict[tuple[str, int], tuple[int, int, bool]] = {}
        for topic in self._sources:
            # acks=False: no per-message acked-offset record (see the module docstring).
            source = self.app.topic(topic, value_serializer="raw", key_serializer="raw", acks=False)
            self.app.agent(source, name=f"apply-{topic}")(self._consume)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.task(self._ticks)
        self._starting = asyncio.Lock()

    async def start_resources(self) -> None:
        """Producer, snapshot store and metric definitions, once, before the first
        partition is taken (the first rebalance or tick starts them)."""
        async with self._starting:
            if self._producer is None:
                await self._start_resources()

    async def _start_resources(self) -> None:
        await retry_async(self._start_producer, "starting the producer", self._outage_s)
        self._consumer = _SnapshotCommits(self.app)  # type: ignore[assignment]
        self._snapshots = SnapshotStore(
            self.settings.bootstrap, self.catalog.stream_snapshots, self._producer
        )
        definitions = MetricDefinitions(
            self.settings.bootstrap, self.catalog.control, f"{self.group_id}-definitions"
        )
        definitions.start()
        self._definitions = definitions
        if not await asyncio.to_thread(definitions.wait_until_caught_up, CONTROL_WAIT_S):
            log.warning("the control topic is not read to its end yet; metrics follow later")

    async def _start_producer(self) -> None:
        """A new producer (the worker's own settings), started; stopped again on failure."""
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def stop_resources(self) -> None:
        """Publish, snapshot what is owned, release the producer and the follower."""
        if self._producer is None:
            return
        try:
            async with self._exclusive:
                await self._publish_now()
                await self.snapshot(self.processor.owned())
        finally:
            if self._publishing is not None:
                self._publishing.cancel()
            if self._producer is not None:
                await self._producer.stop()
            if self._definitions is not None:
                self._definitions.stop()
            await self._hole_probe.stop()

    async def _consume(self, stream: Any) -> None:
        queue = stream.channel.queue
        app = self.app
        consumer = app.consumer
        if isinstance(consumer, _Consumer) and queue not in consumer.handover_queues:
            consumer.handover_queues.append(queue)
        async for event in stream.events():
            # With it, the messages already buffered: one call of the compiled path per
            # partition's run of them instead of one per message. Messages of an earlier
            # consumer generation, or taken while Faust's flow is stopped (a rebalance),
            # are skipped as Faust's stream skips them.
            messages = [event.message]
            while len(messages) < DRAIN_MESSAGES and not queue.empty():
                message = queue.get_nowait().message
                if (
                    message.generation_id == app.consumer_generation_id
                    and app.flow_control.is_active()
                ):
                    messages.append(message)
            runs: dict[tuple[str, int], list[Any]] = {}
            for message in messages:
                runs.setdefault((message.topic, message.partition), []).append(message)
            async with self._exclusive:
                for place, run in runs.items():
                    await self._apply(place, run)

    async def _apply(self, place: tuple[str, int], messages: list[Any]) -> None:
        """Apply the messages of one topic partition (in offset order) that continue its
        states; skip those already in them; seek where the states need it. Called with
        ``_exclusive`` held."""
        topic, partition = place
        if partition not in self.processor.units:
            return  # not (or no longer) owned: its owner processes them
        expected = self.processor.partials.next_offsets(partition).get(topic)
        applied: list[Any] = []
        for message in messages:
            offset = message.offset
            if expected is None:
                # No snapshot covers this partition: its states start at the log's start.
                if offset > 0 and place not in self._rewound:
                    self._rewound.add(place)
                    log.info("%s[%d]: no snapshot, at %d: reading from the start", *place, offset)
                    await self.app.consumer.seek(TP(topic, partition), 0)
                    return
            elif offset < expected:
                # Already in the restored states. Far below (Faust started below the
                # snapshot: its offsets were not committed), seek past them rather than
                # read them all through the agents; a few (a message delivered again
                # after a seek) are skipped: each seek risks a race in aiokafka's
                # fetcher (a seek from this thread while Faust's consumer thread
                # fetches once crashed the Faust fetcher with a KeyError).
                last = self._ahead.get(place)
                if expected - offset >= SEEK_AHEAD_MIN and (
                    last is None or time.monotonic() - last > RESEEK_S
                ):
                    log.info(
                        "%s[%d]: at %d, the states end at %d: seeking ahead",
                        *place,
                        offset,
                        expected,
                    )
                    self._ahead[place] = time.monotonic()
                    await self.app.consumer.seek(TP(*place), expected)
                    break
                continue
            elif offset > expected and not await self._holes(place, expected, offset):
                # Messages Faust fetched but cleared from the agents' buffers in a
                # rebalance, or a committed offset past the snapshot: read them again
                # (after applying those before the gap). A gap of offsets holding no
                # record (a transaction's marker, an aborted transaction) is applied past.
                await self._handle(place, applied)
                applied = []
                last = self._seeking.get(place)
                if last is None or time.monotonic() - last > RESEEK_S:
                    log.info(
                        "%s[%d]: at %d, the states need %d: seeking back", *place, offset, expected
                    )
                    await self._seek(place, expected)
                break
            applied.append(message)
            expected = offset + 1
        await self._handle(place, applied)

    async def _holes(self, place: tuple[str, int], expected: int, offset: int) -> bool:
        """Whether offsets ``expected`` to ``offset - 1`` of ``place`` hold no committed
        record (``holes``); a direct read of the log tells, once per fetched range."""
        try:
            holes = await self._hole_probe.holes(*place, expected, offset)
        except Exception:
            log.exception("%s[%d]: reading offsets %d-%d failed", *place, expected, offset - 1)
            return False
        if holes:
            log.debug("%s[%d]: no record at offsets %d-%d", *place, expected, offset - 1)
        return holes

    async def _handle(self, place: tuple[str, int], messages: list[Any]) -> None:
        """Consecutive messages of one topic partition, continuing its states, applied."""
        if not messages:
            return
        self._seeking.pop(place, None)
        self._rewound.add(place)
        for key, letter in self.processor.handle_batch(*place, messages):
            await self._send_dead_letter(key, letter)

    async def _seek(self, place: tuple[str, int], offset: int) -> None:
        self._seeking[place] = time.monotonic()
        await self.app.consumer.seek(TP(*place), offset)

    async def _ticks(self) -> None:
        """Housekeeping every ``tick_interval`` once the previous turn is done (not a
        Faust timer: a turn that writes a snapshot outlasts the tick, which is expected)."""
        while True:
            await asyncio.sleep(self.tick_interval)
            await self._tick()

    async def _tick(self) -> None:
        await self.start_resources()
        assert self._definitions is not None
        async with self._exclusive:
            # A seek can lose a race with messages Faust had already fetched (it drops
            # what lies below the last offset it delivered): seek again until they come.
            for place, since in list(self._seeking.items()):
                if time.monotonic() - since > RESEEK_S and place[1] in self.processor.units:
                    expected = self.processor.partials.next_offsets(place[1]).get(place[0])
                    if expected is not None:
                        await self._seek(place, expected)
            await self._pass_trailing_holes()
            await self._housekeeping(self._definitions)

    async def _pass_trailing_holes(self) -> None:
        """Move the states' next offset of a partition whose log ends with offsets holding
        no record (a transaction's marker last) to its end, so that progress reaches the
        end offset: checked (``_holes``) once a partition shows the same next offset and
        end on two ticks running, once per such pair."""
        partials = self.processor.partials
        for partition in self.processor.owned():
            next_offsets = partials.next_offsets(partition)
            for topic in self._sources:
                place = (topic, partition)
                start, end = next_offsets.get(topic), self.highwater(topic, partition)
                if start is None or end is None or end <= start or place in self._seeking:
                    self._tails.pop(place, None)
                    continue
                seen = self._tails.get(place)
                self._tails[place] = (start, end, seen is not None and seen[:2] == (start, end))
                if seen == (start, end, False) and await self._holes(place, start, end):
                    partials.processed(partition, topic, end - 1)

    async def _on_revoked(self, app: Any, revoked: Iterable[Any], **_: Any) -> None:
        try:
            await self.start_resources()
            await self.checkpoint({tp.partition for tp in revoked if tp.topic in self._sources})
        except Exception:
            log.exception("snapshot before giving up partitions failed")

    def highwater(self, topic: str, partition: int) -> int | None:
        if self._producer is None:
            return None  # not started: Faust's consumer may not exist yet
        tp = TP(topic, partition)
        consumer = self.app.consumer
        if tp not in consumer.assignment():
            return None  # not (or not yet) Faust's consumer's
        result: int | None = consumer.highwater(tp)
        return result

    async def _on_assigned(self, app: Any, assigned: Iterable[Any], **_: Any) -> None:
        assigned = list(assigned)
        partitions = {tp.partition for tp in assigned if tp.topic in self._sources}
        try:
            _check_copartitioned(assigned, self._sources)
            await self.start_resources()
            async with self._exclusive:
                self._generation += 1
                self._rewound.clear()
                self._seeking.clear()
                self._ahead.clear()
                self._hole_probe.forget()
                self._tails.clear()
                await self._take(partitions)
        except Exception as error:
            log.exception("restoring partitions %s failed", sorted(partitions))
            self.fail(error)
            await self.app.crash(error)


def _check_copartitioned(assigned: Iterable[Any], sources: tuple[str, ...]) -> None:
    """Raise unless every event topic came with the same partition numbers: a unit's
    exposures and outcomes must meet in one worker. Faust's ``PartitionAssignor`` does
    that for topics of equal partition counts; its aiokafka driver falls back to a
    round-robin assignor (which does not, unless the workers divide the partitions) when
    an app has no changelog table and ``table_standby_replicas`` is 0, so this guards the
    configuration."""
    by_topic = {
        topic: sorted(tp.partition for tp in assigned if tp.topic == topic) for topic in sources
    }
    if len({tuple(partitions) for partitions in by_topic.values()}) > 1:
        raise RuntimeError(f"the event topics' partitions are not co-partitioned: {by_topic}")


async def _broker_answers_within(bootstrap: str, tolerance_s: float) -> None:
    async def answer() -> None:
        if not await broker_answers(bootstrap):
            raise ConnectionError("the Kafka broker does not accept connections")

    await retry_async(answer, "waiting for the Kafka broker", tolerance_s)


def run(worker: FaustStreamWorker) -> int:
    """Run a Faust stream worker until SIGTERM/SIGINT; the exit code."""
    settings = worker.settings

    async def shutdown(sender: Any, **_: Any) -> None:
        await worker.stop_resources()

    worker.app.on_before_shutdown.connect(shutdown)
    log.info(
        "stream worker (faust) of group %s starting on %s", worker.group_id, settings.bootstrap
    )
    # Faust's consumer gives up at once when it cannot bootstrap: a worker started during a
    # broker outage waits for the broker first, as long as an outage is tolerated.
    # uvloop, as the aiokafka worker: Faust's hand-over of each message (tasks, futures,
    # callbacks) and its consumer thread's loop (made by this policy) run on it.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_broker_answers_within(settings.bootstrap, outage_tolerance_s()))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    faust.Worker(worker.app, loop=loop, loglevel="info", quiet=True).execute_from_commandline()
    return 1 if worker._failure is not None else 0
