"""The controller's Faust agents on control events Faust did not deliver (it can drop
messages fetched while a rebalance holds its flow): the hole is read directly, so the
projection never skips an event, whether a later message reveals it or only the log's
end does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.control import control_event_json
from services.control_domain.control_log import ControlProjection
from services.controller import agents as agents_module
from services.controller.agents import ControllerAgents
from services.controller.aggregates import AggregateView
from tests.unit.test_rollout_projection import applied

CONTROL = "ns.control"


def _records() -> list[Any]:
    return [
        SimpleNamespace(offset=offset, key=None, value=control_event_json(event))
        for offset, event in applied().events
    ]


class _Reader:
    """The log, read directly."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.reads: list[tuple[int, int]] = []

    def ends(self, places: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(places, len(self.records))

    def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        assert (topic, partition) == (CONTROL, 0)
        self.reads.append((start, end))
        return [r for r in self.records if start <= r.offset < end]


class _Stream:
    def __init__(self, records: list[Any]) -> None:
        self._records = records

    async def events(self) -> AsyncIterator[Any]:
        for record in self._records:
            yield SimpleNamespace(message=record)


class _Controller:
    checks = 0

    def run_once(self) -> int:
        self.checks += 1
        return 0


def _agents(tmp_path: Path, records: list[Any]) -> tuple[ControllerAgents, _Reader]:
    projection = ControlProjection()
    agents = ControllerAgents(
        _Controller(),  # type: ignore[arg-type]
        projection,
        AggregateView("ns.aggregates", "ns.deadletter"),
        bootstrap="127.0.0.1:9",
        group="ns-controller",
        control_topic=CONTROL,
        aggregates_topic="ns.aggregates",
        deadletter_topic="ns.deadletter",
        datadir=tmp_path,
        tick_s=0.25,
    )
    reader = _Reader(records)
    agents.reader = reader  # type: ignore[assignment]
    return agents, reader


def test_events_faust_dropped_before_a_message_are_read_directly(tmp_path: Path) -> None:
    records = _records()
    agents, reader = _agents(tmp_path, records)
    # Faust delivers the log from offset 2 (0 and 1 dropped), then 0 again (a restart of
    # the partition at 0 after a rebalance): nothing is skipped, nothing applied twice.
    asyncio.run(agents._follow_control(_Stream([*records[2:], records[0]])))
    assert agents.projection.state.next_offset == len(records)
    assert reader.reads == [(0, 2)]
    assert agents.projection.state.tenants["acme"].rollouts["new-checkout"].checks == 0


def test_an_event_dropped_at_the_logs_end_is_read_before_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agents_module, "FILL_AFTER_S", 0.05)
    records = _records()
    agents, reader = _agents(tmp_path, records)
    asyncio.run(agents._follow_control(_Stream(records[:-1])))  # the last never comes
    assert agents.projection.state.next_offset == len(records) - 1
    agents._check()
    assert agents.projection.state.next_offset == len(records)
    assert reader.reads == [(len(records) - 1, len(records))]
    assert agents.controller.checks == 1  # type: ignore[attr-defined]
