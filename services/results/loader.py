"""The loader: a background thread projecting the platform's topics into the DuckDB store.

It reads every partition of the exposures, outcomes, aggregates, control and
dead-letter topics with manual assignment (no consumer group, nothing committed to
Kafka), ``read_committed`` (a transactional producer's aborted events are not loaded).
Positions come from the store's ``loader_offsets`` (else the beginning), and each batch
(up to ``max_batch_messages`` or ``max_batch_seconds``) is written with its next offsets
in one transaction. On any error the consumer is dropped and, after a pause, reading
resumes from the offsets committed in DuckDB, so nothing is lost or loaded twice.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from kafka import KafkaConsumer, TopicPartition

from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from schemas.topics import TopicCatalog
from services.results.decoding import TopicRole, add_message, reject, topic_roles

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_MESSAGES = 5000
DEFAULT_MAX_BATCH_SECONDS = 0.2
#: Event rows per DuckDB transaction at most (batch messages carry many events each).
MAX_BATCH_EVENTS = 50_000
#: How often to look for topics or partitions that appeared since the loader started.
METADATA_REFRESH_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 2.0


@dataclass(frozen=True)
class LoaderHealth:
    running: bool
    error: str | None
    messages_loaded: int
    batches_loaded: int


class _Message(NamedTuple):
    """One consumed message, as ``add_message`` takes it."""

    role: TopicRole
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None


class _AssignmentChanged(Exception):
    """Topics or partitions changed; re-assign from the committed offsets."""


class TopicsMissingError(RuntimeError):
    """None of the platform's topics exist on the broker yet."""


class Loader:
    """Owns a Kafka consumer on its own thread; ``start`` it, ``stop`` it once."""

    def __init__(
        self,
        store: AnalyticsStore,
        bootstrap: str,
        catalog: TopicCatalog,
        *,
        max_batch_messages: int = DEFAULT_MAX_BATCH_MESSAGES,
        max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._roles = topic_roles(catalog)
        self._client_id = f"{catalog.namespace}-results-loader"
        self._max_messages = max_batch_messages
        self._max_seconds = max_batch_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="results-loader", daemon=True)
        self._error: str | None = None
        self._messages = 0
        self._batches = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand (or drop it uncommitted) and close the consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def health(self) -> LoaderHealth:
        return LoaderHealth(
            running=self._thread.is_alive(),
            error=self._error,
            messages_loaded=self._messages,
            batches_loaded=self._batches,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except _AssignmentChanged:
                log.info("topics or partitions changed; re-assigning")
            except TopicsMissingError as error:
                self._error = str(error)
                log.error("%s", error)
                self._stop.wait(RETRY_PAUSE_SECONDS)
            except Exception as error:
                self._error = f"{type(error).__name__}: {error}"
                log.exception("loader failed; retrying from the committed offsets")
                self._stop.wait(RETRY_PAUSE_SECONDS)

    def _consume(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            # Events of aborted transactions (a transactional producer's) are not loaded.
            isolation_level="read_committed",
            max_poll_records=self._max_messages,
            fetch_max_wait_ms=100,
        )
        # One batch is written (DuckDB, mostly outside the GIL) while the next is read
        # and parsed. A failed write surfaces here before the next one starts; reading
        # then restarts from the offsets DuckDB committed, dropping the batch in hand.
        writing: Future[None] | None = None
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="results-writer") as writer:
                assigned = self._assign(consumer)
                next_refresh = time.monotonic() + METADATA_REFRESH_SECONDS
                while not self._stop.is_set():
                    batch = self._next_batch(consumer)
                    if writing is not None:
                        writing.result()
                        writing = None
                    if len(batch):
                        writing = writer.submit(self._write, batch)
                    if time.monotonic() >= next_refresh:
                        next_refresh = time.monotonic() + METADATA_REFRESH_SECONDS
                        if set(self._partitions(consumer)) != assigned:
                            raise _AssignmentChanged
                if writing is not None:
                    writing.result()
        finally:
            consumer.close()

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for topic in self._roles:
            numbers = consumer.partitions_for_topic(topic) or set()
            partitions.extend(TopicPartition(topic, number) for number in sorted(numbers))
        return partitions

    def _assign(self, consumer: KafkaConsumer) -> set[TopicPartition]:
        """Assign every partition that exists, positioned at the offsets stored in DuckDB."""
        partitions = self._partitions(consumer)
        present = {p.topic for p in partitions}
        deadline = time.monotonic() + 10.0
        while present != set(self._roles) and time.monotonic() < deadline:
            if self._stop.wait(0.5):
                break
            partitions = self._partitions(consumer)
            present = {p.topic for p in partitions}
        missing = sorted(set(self._roles) - present)
        if not partitions and not self._stop.is_set():
            raise TopicsMissingError(
                f"none of the topics {missing} exist yet; the platform creates them "
                "(services.broker.topics.ensure_topics)"
            )
        if missing:
            log.warning("topics %s do not exist yet; loading the others", missing)
        consumer.assign(partitions)
        committed = self._store.loaded_offsets()
        for partition in partitions:
            offset = committed.get((partition.topic, partition.partition))
            if offset is None:
                consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, offset)
        log.info("loading %d partitions, %d from stored offsets", len(partitions), len(committed))
        return set(partitions)

    def _next_batch(self, consumer: KafkaConsumer) -> LoadBatch:
        batch = LoadBatch()
        deadline = time.monotonic() + self._max_seconds
        while (
            len(batch) < self._max_messages
            and batch.events < MAX_BATCH_EVENTS
            and not self._stop.is_set()
        ):
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            polled = consumer.poll(
                timeout_ms=remaining_ms, max_records=self._max_messages - len(batch)
            )
            for partition, records in polled.items():
                role: TopicRole = self._roles[partition.topic]
                for record in records:
                    message = _Message(
                        role,
                        partition.topic,
                        partition.partition,
                        record.offset,
                        record.value,
                        record.key,
                    )
                    batch.messages_read.append(message)
                    add_message(batch, *message)
        return batch

    def _write(self, batch: LoadBatch) -> None:
        try:
            self._store.load(batch)
        except Exception:
            # One message's rows may be what DuckDB refuses: store the batch message by
            # message so that only that one is rejected, and every tenant's others load.
            log.exception("storing a batch failed; storing its messages one at a time")
            self._write_one_by_one(batch.messages_read)
            return
        self._error = None
        self._messages += len(batch)
        self._batches += 1
        self._log_rejections(batch)

    def _write_one_by_one(self, messages: list[_Message]) -> None:
        for message in messages:
            single = LoadBatch()
            add_message(single, *message)
            try:
                self._store.load(single)
            except Exception as error:
                # If even its rejection cannot be stored, the store itself is failing:
                # that raises, and the loader retries from the committed offsets.
                refused = LoadBatch()
                reason = f"could not be stored: {type(error).__name__}: {error}"
                role, topic, partition, offset, value, key = message
                reject(refused, role, topic, partition, offset, value or b"", key, reason)
                self._store.load(refused)
                single = refused
            self._messages += len(single)
            self._log_rejections(single)
        self._error = None
        self._batches += 1

    def _log_rejections(self, batch: LoadBatch) -> None:
        first = batch.first_rejections()
        for topic, count in batch.rejected_by_topic.items():
            partition, offset, reason = first[topic]
            log.warning(
                "%d messages on %s could not be parsed and were not loaded (first at "
                "partition %d offset %d: %s); see table load_rejections",
                count,
                topic,
                partition,
                offset,
                reason,
            )
