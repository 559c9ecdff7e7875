"""The Faust table of unit states: its changelog codec, and the latest write per partition.

Values are live ``UnitState`` objects in memory (store ``memory://``) and compact bytes in
the changelog (``state_codec``). The table remembers the delivery future of the latest
changelog write of each partition: Kafka keeps a partition's writes in order, so once it
resolves every earlier write of that partition is durable too. The publisher waits for
it before claiming progress, without flushing the whole producer (which, under steady
load, would keep waiting for writes made after the claim).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import FutureMessage

from services.stream.state_codec import UnitStateCodec

UNITS_TABLE = "units"


class UnitTable(faust.Table):
    """A ``faust.Table`` that keeps the latest changelog delivery future per partition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latest_writes: dict[int, FutureMessage] = {}

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        future = super().send_changelog(*args, **kwargs)
        partition = future.message.partition
        if partition is not None:
            self.latest_writes[partition] = future
        return future

    def writes_in_flight(self, partitions: list[int]) -> list[asyncio.Future[Any]]:
        """Futures that resolve once everything written so far to ``partitions`` is durable."""
        return [self.latest_writes[p] for p in partitions if p in self.latest_writes]


def create_unit_table(app: faust.App, partitions: int) -> UnitTable:
    """Register the unit table on ``app`` (changelog ``{app id}-units-changelog``)."""
    codec = UnitStateCodec()
    table = UnitTable(
        app,
        name=UNITS_TABLE,
        default=None,
        partitions=partitions,
        key_type=bytes,
        beacon=app.tables.beacon,
        # Faust derives serializers from key/value types, and ours is a codec, not a type:
        # the changelog topic (the name and settings Faust would use) decodes with it
        # during recovery, and the table's value_serializer encodes each write with it.
        changelog_topic=app.topic(
            f"{app.conf.id}-{UNITS_TABLE}-changelog",
            key_type=bytes,
            value_serializer=codec,
            partitions=partitions,
            compacting=True,
            deleting=False,
            acks=False,
            internal=True,
            maxsize=131_072,
            allow_empty=True,
        ),
    )
    table.value_serializer = codec
    app.tables.add(table)
    return table
