"""``liftstream import`` against the real broker, collector and stream worker.

A team moves an existing experiment's logs in: events two months old (live ingest refuses
anything older than 30 days) from a JSON Lines and a Parquet file. They land on the event
topics with their own timestamps, the stream counts them, bad rows are dead-lettered and
counted by reason, and importing the same file again stores nothing twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from liftstream.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.events import parse_event_message
from tests.integration.helpers_collector import CollectorProcess, read_topic
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_stream import AggregatesReader, StreamWorker

pytestmark = pytest.mark.integration

UNITS = 30
OLD = datetime.now(UTC) - timedelta(days=60)


def _events() -> list[dict[str, Any]]:
    """Each unit: an exposure, then a purchase worth its number (no event ids: derived)."""
    events: list[dict[str, Any]] = []
    for unit in range(UNITS):
        at = OLD + timedelta(minutes=unit)
        variant = "control" if unit % 2 else "treatment"
        events.append(
            {
                "type": "exposure",
                "unit_id": f"old-{unit}",
                "timestamp": at.isoformat(),
                "experiment_key": "checkout",
                "variant_key": variant,
            }
        )
        events.append(
            {
                "type": "outcome",
                "unit_id": f"old-{unit}",
                "timestamp": (at + timedelta(seconds=5)).isoformat(),
                "event": "purchase",
                "value": float(unit),
            }
        )
    return events


def _import(path: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "liftstream_cli", "import", str(path), "--tenant", "acme", "--json"],
        env={**os.environ, **env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "importing" in done.stderr  # the progress bar
    return json.loads(done.stdout)


def test_old_events_are_imported_counted_by_the_stream_and_never_twice(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    events = _events()
    bad = [
        {
            "type": "outcome",
            "unit_id": "x",
            "timestamp": OLD.isoformat(),
            "event": "purchase",
            "value": "lots",
        },
        {**events[1], "tenant_id": "globex"},
    ]
    lines = [json.dumps(event) for event in [*events, events[3], *bad]]
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join([*lines, "", "this line is not JSON"]) + "\n")

    with CollectorProcess(tmp_path / "collector.log") as collector:
        collector.wait_until_key_known(keys["admin"])
        env = {"LIFTSTREAM_COLLECTOR_URL": collector.url, "LIFTSTREAM_API_KEY": keys["admin"]}
        live = collector.post([events[0]], keys["ingest"])
        assert live.status_code == 422 and "timestamp" in live.text  # too old for live ingest

        first = _import(jsonl, env)
        assert first["read"] == 2 * UNITS + 4
        assert (first["accepted"], first["duplicates"]) == (2 * UNITS, 1)
        assert first["rejected_by_reason"] == {"invalid": 1, "not_object": 1, "tenant_mismatch": 1}

        again = _import(jsonl, env)  # the same ids again: downstream keeps one of each
        assert again["rejected"] == 3

        # The same events from Parquet (naive timestamps are UTC): the same ids.
        parquet = tmp_path / "events.parquet"
        with duckdb.connect() as db:
            db.execute(
                "create table e (type varchar, unit_id varchar, timestamp timestamp, "
                "experiment_key varchar, variant_key varchar, event varchar, value double)"
            )
            db.executemany(
                "insert into e values (?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        e["type"],
                        e["unit_id"],
                        datetime.fromisoformat(e["timestamp"]).replace(tzinfo=None),
                        e.get("experiment_key"),
                        e.get("variant_key"),
                        e.get("event"),
                        e.get("value"),
                    ]
                    for e in events
                ],
            )
            db.execute(f"copy e to '{parquet}' (format parquet)")
        from_parquet = _import(parquet, env)
        assert (from_parquet["accepted"], from_parquet["rejected"]) == (2 * UNITS, 0)

    topics = platform_settings.topics
    stored = [
        event
        for topic in (topics.exposures, topics.outcomes)
        for _, value in read_topic(platform_settings.bootstrap, topic)
        for event in parse_event_message(value)
    ]
    ids = Counter(event.event_id for event in stored)
    # Three imports, one id per event: each stored three times (the line the file repeats,
    # five), and every copy but one dropped downstream.
    assert sorted(ids.values()) == [3] * (2 * UNITS - 1) + [5]
    assert {event.timestamp for event in stored} == {
        datetime.fromisoformat(event["timestamp"]) for event in events
    }
    letters = [
        DeadLetter.model_validate_json(value)
        for _, value in read_topic(platform_settings.bootstrap, topics.deadletter)
    ]
    assert {letter.tenant_id for letter in letters} == {"acme"}
    sources = Counter(letter.source_topic for letter in letters)
    assert sources == {"http:/v1/tenants/{tenant}/import": 6, "http:/v1/events": 1}

    # The stream counts the imported units once, whatever the copies.
    reader = AggregatesReader(platform_settings)
    with StreamWorker(tmp_path / "stream.log") as worker:
        view = reader.wait_until_caught_up(worker)
    reader.close()
    units = {
        variant: view.units[("acme", "checkout", variant)][0]
        for variant in ("control", "treatment")
    }
    assert units == {"control": UNITS // 2, "treatment": UNITS // 2}
    # Each purchase once (worth the unit's number), not once per copy.
    assert view.stats[("acme", "checkout", "control", "purchase", "count")][0] == UNITS // 2
    assert view.stats[("acme", "checkout", "control", "purchase", "sum")][0] == sum(
        range(1, UNITS, 2)
    )
    assert view.stats[("acme", "checkout", "treatment", "purchase", "sum")][0] == sum(
        range(0, UNITS, 2)
    )
