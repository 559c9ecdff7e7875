"""``liftstream import``: reading JSON Lines and Parquet, batching, and the summary
(a fake collector; the real one is in tests/integration/test_cli_import.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from liftstream.errors import InvalidInputError
from liftstream_cli import import_events
from liftstream_cli.control_api import AccessDeniedError
from liftstream_cli.import_events import (
    CollectorImport,
    batches,
    read_events,
    run_import,
)


def test_json_lines_skip_blank_lines_and_send_a_bad_line_as_text(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1}\n\n   \nnot json\n[1]\n')
    assert list(read_events(path)) == [{"a": 1}, "not json", [1]]


def test_parquet_rows_become_events_without_nulls_with_utc_times(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    with duckdb.connect() as db:
        db.execute(
            f"""copy (select * from (values
                ('exposure', 'u1', timestamp '2025-01-02 03:04:05', 'exp', 'a', null, null,
                 null, uuid '6b64fe21-9663-5d70-91d8-c91e024ab55a'),
                ('outcome', 'u1', timestamp '2025-01-02 03:04:06', null, null, 'buy', 2.5,
                 '{{"plan": "pro"}}', null)
            ) t(type, unit_id, timestamp, experiment_key, variant_key, event, value,
                properties, event_id)) to '{path}' (format parquet)"""
        )
    exposure, outcome = read_events(path)
    assert exposure == {
        "type": "exposure",
        "unit_id": "u1",
        "timestamp": "2025-01-02T03:04:05+00:00",
        "experiment_key": "exp",
        "variant_key": "a",
        "event_id": "6b64fe21-9663-5d70-91d8-c91e024ab55a",
    }
    assert outcome["properties"] == {"plan": "pro"} and outcome["value"] == 2.5


def test_a_file_of_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a,b\n")
    with pytest.raises(InvalidInputError, match="neither JSON Lines"):
        list(read_events(path))
    with pytest.raises(InvalidInputError, match="no such file"):
        list(read_events(tmp_path / "missing.jsonl"))


def test_batches_keep_under_the_event_and_byte_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_events, "BATCH_EVENTS", 3)
    monkeypatch.setattr(import_events, "BATCH_BYTES", 100)
    events = [{"n": i} for i in range(7)] + [{"big": "x" * 150}, {"n": 8}]
    sizes = [len(batch) for batch in batches(iter(events))]
    assert sizes == [3, 3, 1, 1, 1]  # the big event goes alone
    assert sum(sizes) == len(events)


class FakeCollector:
    """Answers like the import endpoint: the same content gets the same id."""

    def __init__(self, throttle_first: int = 0) -> None:
        self.bodies: list[list[Any]] = []
        self.throttle = throttle_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] != "Bearer admin":
            return httpx.Response(403, json={"detail": "not an admin key"})
        if self.throttle:
            self.throttle -= 1
            return httpx.Response(429, json={"detail": "quota"}, headers={"Retry-After": "2"})
        events = json.loads(request.content)
        self.bodies.append(events)
        ok = [e for e in events if isinstance(e, dict) and "bad" not in e]
        refused = [e for e in events if e not in ok]
        ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(e, sort_keys=True))) for e in ok]
        status = 202 if not refused else 207 if ok else 422
        return httpx.Response(
            status,
            json={
                "accepted": len(ok),
                "rejected": len(refused),
                "errors": [{"index": 0, "field": "bad", "reason": "no"} for _ in refused],
                "event_ids": ids,
                "rejected_by_reason": {"invalid": len(refused)} if refused else {},
            },
        )


def _api(handler: Any, key: str = "admin") -> CollectorImport:
    return CollectorImport("http://collector", key, "acme", transport=httpx.MockTransport(handler))


def test_the_summary_counts_accepted_duplicates_and_rejections_and_429_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_events, "BATCH_EVENTS", 2)
    path = tmp_path / "e.jsonl"
    rows = [{"n": 1}, {"n": 2}, {"n": 1}, {"bad": 1}, {"n": 3}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\nnope\n")
    collector = FakeCollector(throttle_first=1)
    waits: list[float] = []
    summary = run_import(_api(collector), path, sleep=waits.append)
    assert waits == [2.0]
    assert len(collector.bodies) == 3  # the throttled batch was sent again, not lost
    assert summary.as_json() == {
        "read": 6,
        "accepted": 3,
        "duplicates": 1,
        "rejected": 2,
        "rejected_by_reason": {"invalid": 2},
        "examples": ["bad: no", "bad: no"],
    }


def test_a_key_that_is_not_the_tenants_admin_key_stops_the_import(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"n": 1}\n')
    with pytest.raises(AccessDeniedError, match="admin key"):
        run_import(_api(FakeCollector(), key="ingest"), path, sleep=lambda s: None)


def test_nan_cells_are_sent_as_text_so_the_collector_names_the_field() -> None:
    assert import_events._json_value("value", float("nan")) == "nan"
    assert import_events._json_value("timestamp", datetime(2025, 1, 1)) == (
        datetime(2025, 1, 1, tzinfo=UTC).isoformat()
    )
