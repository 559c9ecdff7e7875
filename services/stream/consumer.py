"""Faust's Kafka consumer, made to rewind partitions that have no committed offset.

After a rebalance Faust may consume records it then throws away, and relies on seeking
every partition back to its committed offset (``perform_seek``) before the streams
resume. One such loss is a race in faust-streaming 0.15.3: the fetcher hands aiokafka the
live set of active partitions; when table recovery pauses the last changelog partition,
that set becomes empty, aiokafka reads an empty set as "every partition" and returns the
records it had prefetched for the paused stream partitions, and Faust drops them (not
active) after aiokafka has moved its position past them.

aiokafka's ``seek_to_committed`` only seeks partitions whose committed offset is above 0.
A partition with no committed offset (a new group, a crash before the first commit,
expired or deleted offsets) or with offset 0 keeps the position past the dropped records,
and the worker silently skips them. ``StreamConsumer`` seeks those partitions too: to 0,
which the fetcher turns into the log start under ``auto_offset_reset=earliest``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


def rewind_targets(
    committed: Mapping[TP, int | None],
    is_changelog: Callable[[TP], bool],
    reset_to_earliest: bool,
) -> dict[TP, int]:
    """Stream partitions ``seek_to_committed`` left alone, and the offset to seek them to.

    Changelog partitions are left alone: table recovery positions them itself.
    """
    return {
        tp: 0
        for tp, offset in committed.items()
        if not is_changelog(tp) and (offset == 0 or (offset is None and reset_to_earliest))
    }


class StreamConsumer(faust_aiokafka.Consumer):
    """Seeks partitions without a committed offset to their start, like the others."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        targets = rewind_targets(
            committed,
            self._is_changelog_tp,
            self.app.conf.consumer_auto_offset_reset == "earliest",
        )
        if targets:
            self.log.info("Seek partitions without a committed offset to their start")
            await self.seek_wait(targets)
        return committed


class StreamTransport(faust_aiokafka.Transport):
    """The aiokafka transport of Faust, with ``StreamConsumer``."""

    Consumer: ClassVar[type[Any]] = StreamConsumer


def use_stream_consumer(app: faust.App) -> None:
    """Make ``app`` consume with ``StreamConsumer`` (call before the consumer exists)."""
    app.transport = StreamTransport(app.conf.broker_consumer, app)
