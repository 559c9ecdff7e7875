"""The Faust app of the stream worker: topics, the unit table, the agent and the timer.

One agent consumes the exposures and outcomes topics together (co-partitioned, keyed
``tenant:unit``), so a unit's events meet on one partition. The only persisted state is
the ``units`` table (memory store, changelog topic ``{app id}-units-changelog``); the
per-partition partial aggregates are derived from it and rebuilt after every recovery,
so the two can never disagree after a crash. A timer publishes what changed to the
aggregates topic and then the progress marks. The catalog topics already exist and are
never declared or altered by Faust (``internal=False``). The app consumes with
``consumer.StreamConsumer``, so no event is skipped after a rebalance even where the group
has no committed offset yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from liftstream.settings import Settings
from schemas.deadletter import DeadLetter
from services.stream.consumer import use_stream_consumer
from services.stream.intake import SourceMessage
from services.stream.processor import StreamProcessor
from services.stream.unit_table import create_unit_table

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_INTERVAL = 0.5


def create_app(
    settings: Settings, *, publish_interval: float = DEFAULT_PUBLISH_INTERVAL
) -> faust.App:
    """The stream worker's app for ``settings`` (id ``{namespace}-stream``)."""
    if not settings.bootstrap:
        raise ValueError("LIFTSTREAM_BOOTSTRAP: no Kafka bootstrap server is configured")
    if publish_interval <= 0:
        raise ValueError(f"publish_interval: must be > 0 seconds, got {publish_interval}")
    catalog = settings.topics
    app_id = f"{settings.namespace}-stream"
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        datadir=str(settings.home / "stream"),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        # Lets the changelog and aggregate writes of many events share a request.
        producer_linger=0.01,
    )
    use_stream_consumer(app)
    raw = {"key_serializer": "raw", "value_serializer": "raw", "internal": False}
    events_topic = app.topic(catalog.exposures, catalog.outcomes, **raw)
    aggregates_topic = app.topic(catalog.aggregates, **raw)
    deadletter_topic = app.topic(catalog.deadletter, **raw)
    units = create_unit_table(app, settings.partitions)
    processor = StreamProcessor(catalog, units)

    async def attribute(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            source = SourceMessage(
                message.topic, message.partition, message.offset, message.key, message.value
            )
            dead_letter = processor.handle(source)
            if dead_letter is not None:
                await _write_dead_letter(deadletter_topic, message.key, dead_letter)

    app.agent(events_topic, name="attribute")(attribute)

    def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
        return aggregates_topic.send_soon(key=key, value=value)

    async def publish_aggregates() -> None:
        try:
            await processor.publish(send, units.writes_in_flight)
        except Exception:
            log.exception("publishing aggregates failed; will retry on the next tick")

    app.timer(publish_interval, name="publish_aggregates")(publish_aggregates)

    source_topics = {catalog.exposures, catalog.outcomes}

    @units.on_recover
    async def rebuild_partials() -> None:
        owned = sorted(
            {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in source_topics}
        )
        start_offsets = await _committed_offsets(settings.bootstrap, app_id, source_topics, owned)
        units_rebuilt = processor.assign(owned, start_offsets)
        log.info(
            "owning partitions %s; partial aggregates rebuilt from %d unit states",
            owned,
            units_rebuilt,
        )

    async def on_revoked(sender: object, revoked: set[TP], **kwargs: Any) -> None:
        processor.revoke({tp.partition for tp in revoked if tp.topic in source_topics})

    app.on_partitions_revoked.connect(on_revoked)
    return app


async def _write_dead_letter(
    topic: faust.TopicT, key: bytes | None, dead_letter: DeadLetter
) -> None:
    log.warning(
        "dead letter from %s[%s]@%s: %s",
        dead_letter.source_topic,
        dead_letter.source_partition,
        dead_letter.source_offset,
        dead_letter.reason,
    )
    body = dead_letter.model_dump_json()
    try:
        await topic.send(key=key, value=body.encode())
    except Exception:
        # The event itself stays in its source topic; keep the verdict in the log.
        log.exception("could not write the dead letter %s", body)


async def _committed_offsets(
    bootstrap: str, group_id: str, topics: Iterable[str], partitions: Iterable[int]
) -> dict[int, dict[str, int]]:
    """The group's committed offsets per partition and topic (where consumption resumes).

    Everything before them is already in the unit table (Faust flushes the changelog
    before committing), so progress may claim them before any new event is processed.
    """
    wanted = [TopicPartition(topic, partition) for topic in topics for partition in partitions]
    offsets: dict[int, dict[str, int]] = {}
    if not wanted:
        return offsets
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group_id}-offsets")
    try:
        await admin.start()
        committed = await admin.list_consumer_group_offsets(group_id, partitions=wanted)
    except Exception:
        log.warning("could not read committed offsets of %s", group_id, exc_info=True)
        return offsets
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    for tp, meta in committed.items():
        if meta.offset >= 0:
            offsets.setdefault(tp.partition, {})[tp.topic] = meta.offset
    return offsets
