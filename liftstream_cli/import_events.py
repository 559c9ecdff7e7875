"""``liftstream import FILE --tenant T``: backfill events from a JSON Lines or Parquet file.

The file's events go through the collector's import endpoint
(``POST /v1/tenants/{tenant}/import``, admin key): the same validation, topics and dead
letters as live ingest, so streams and replays see them, but events up to 10 years old
are taken (live ingest: 30 days). The file is read in batches (``BATCH_EVENTS`` events,
at most ``BATCH_BYTES`` of JSON), sent one at a time; a 429 or 503 is retried after its
``Retry-After`` with the same batch (the same event ids: an event without one gets an id
derived from its content, so running an import twice stores nothing twice). A rich
progress bar counts events (on stderr), and the summary says how many were accepted, how
many were duplicates (an event id the import had already sent; downstream keeps one) and
how many were rejected, by reason.

- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``): one event object a line; blank lines
  are skipped; a line that is not JSON is sent as a string, so the collector refuses it
  and dead-letters it like any other bad event.
- Parquet (``.parquet``, read with DuckDB): one event a row, columns named like the event's
  fields; null columns are left out (an exposure row has no ``event``), timestamps without
  a zone are UTC, ``properties``/``attributes`` may be a struct, a map or a JSON string.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream_cli.console import err
from liftstream_cli.control_api import AccessDeniedError
from liftstream_cli.service_client import ServiceClient, detail
from schemas.errors import FieldError

#: Events per request, and the most JSON per request (under the collector's body limit).
BATCH_EVENTS = 500
BATCH_BYTES = 2 * 1024 * 1024
#: Rows DuckDB hands over at a time.
PARQUET_CHUNK = 10_000
#: A request refused with 429/503 is sent again this many times before the import stops.
MAX_RETRIES = 60
JSON_LINES = {".jsonl", ".ndjson", ".json"}
FREE_FORM = ("properties", "attributes")


@dataclass
class ImportSummary:
    """What an import did: events read, accepted (new), duplicates, rejected by reason."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: The first field errors the collector sent, for the summary.
    examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "examples": self.examples,
        }


def _bad_file(path: Path, reason: str) -> InvalidInputError:
    return InvalidInputError("cannot import", [FieldError(field=str(path), reason=reason)])


def count_events(path: Path) -> int:
    """How many events ``path`` holds (rows, or non-blank lines)."""
    if path.suffix.lower() == ".parquet":
        import duckdb

        with duckdb.connect() as connection:
            row = connection.execute("select count(*) from read_parquet(?)", [str(path)]).fetchone()
        return int(row[0]) if row else 0
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def read_events(path: Path) -> Iterator[Any]:
    """The raw events of ``path``, in file order (see the module docstring)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise _bad_file(path, "no such file")
    if suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix in JSON_LINES:
        yield from _json_lines(path)
    else:
        raise _bad_file(path, f"'{suffix}' is neither JSON Lines (.jsonl) nor Parquet (.parquet)")


def _json_lines(path: Path) -> Iterator[Any]:
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                yield line.decode("utf-8", errors="replace").rstrip("\r\n")


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import duckdb

    with duckdb.connect() as connection:
        try:
            result = connection.execute("select * from read_parquet(?)", [str(path)])
        except duckdb.Error as error:
            raise _bad_file(path, f"not a Parquet file DuckDB can read: {error}") from None
        names = [column[0] for column in result.description or []]
        while chunk := result.fetchmany(PARQUET_CHUNK):
            for row in chunk:
                yield {
                    name: _json_value(name, value)
                    for name, value in zip(names, row, strict=True)
                    if value is not None
                }


def _json_value(name: str, value: Any) -> Any:
    """A Parquet cell as the JSON the collector reads."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN: the collector names the field instead
    if name in FREE_FORM and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value  # the collector names the field
    if isinstance(value, dict):
        if set(value) == {"key", "value"} and isinstance(value["key"], list):
            value = dict(zip(value["key"], value["value"], strict=False))  # a DuckDB MAP
        return {str(key): _json_value("", child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value("", child) for child in value]
    return value


def batches(events: Iterator[Any]) -> Iterator[list[bytes]]:
    """Events as JSON, grouped in requests of at most ``BATCH_EVENTS`` / ``BATCH_BYTES``."""
    batch: list[bytes] = []
    size = 0
    for event in events:
        encoded = json.dumps(event, default=str, allow_nan=False).encode()
        if batch and (len(batch) >= BATCH_EVENTS or size + len(encoded) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        yield batch


class CollectorImport(ServiceClient):
    """The collector's import endpoint for one tenant, with an admin key."""

    service = "collector"
    hint = "start the platform with `liftstream up`, or set LIFTSTREAM_COLLECTOR_URL"
    unknown = "no collector to import through"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        tenant_id: str,
        timeout_s: float = 60,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout_s,
            transport=transport,
            headers={"Content-Type": "application/json"},
        )
        self._path = f"/v1/tenants/{tenant_id}/import"

    def send(self, body: bytes) -> httpx.Response:
        return self._send("POST", self._path, content=body)


def run_import(
    api: CollectorImport,
    path: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportSummary:
    """Send every event of ``path``; the summary. A progress bar counts events on stderr."""
    summary = ImportSummary()
    seen: set[uuid.UUID] = set()
    total = count_events(path) if path.is_file() else None
    with Progress(
        TextColumn(f"importing {path.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("import", total=total)
        for batch in batches(read_events(path)):
            answer = _send(api, b"[" + b",".join(batch) + b"]", sleep)
            summary.read += len(batch)
            _count(summary, answer, len(batch), seen)
            bar.update(task, advance=len(batch))
    return summary


def _send(api: CollectorImport, body: bytes, sleep: Callable[[float], None]) -> httpx.Response:
    for _ in range(MAX_RETRIES):
        answer = api.send(body)
        if answer.status_code not in (429, 503):
            break
        sleep(_retry_after(answer))
    else:
        raise PlatformUnavailableError(
            f"the collector kept answering {answer.status_code} after {MAX_RETRIES} tries: "
            f"{detail(answer)}"
        )
    if answer.status_code in (401, 403):
        raise AccessDeniedError(
            f"the collector refused the key ({answer.status_code}): {detail(answer)}; "
            "an import needs the tenant's admin key"
        )
    return answer


def _count(summary: ImportSummary, answer: httpx.Response, sent: int, seen: set[uuid.UUID]) -> None:
    if answer.status_code in (202, 207, 422) and "event_ids" in answer.json():
        body = answer.json()
        for text in body["event_ids"]:
            event_id = uuid.UUID(text)
            if event_id in seen:
                summary.duplicates += 1
            else:
                seen.add(event_id)
                summary.accepted += 1
        summary.rejected.update(body["rejected_by_reason"])
        for error in body["errors"][: max(0, 5 - len(summary.examples))]:
            summary.examples.append(f"{error['field'] or '<event>'}: {error['reason']}")
        return
    # The whole request was refused (400, 413, 422 from the broker): say why, per event.
    summary.rejected[f"request_{answer.status_code}"] += sent
    if len(summary.examples) < 5:
        summary.examples.append(detail(answer))


def _retry_after(answer: httpx.Response) -> float:
    try:
        return min(max(float(answer.headers.get("Retry-After", "1")), 0.1), 30.0)
    except ValueError:
        return 1.0


def summary_table(summary: ImportSummary) -> Table:
    table = Table(title="import summary")
    table.add_column("events")
    table.add_column("count", justify="right")
    table.add_row("read", str(summary.read))
    table.add_row("accepted", str(summary.accepted))
    table.add_row("duplicates (already sent by this import)", str(summary.duplicates))
    table.add_row("rejected (dead-lettered)", str(sum(summary.rejected.values())))
    for reason, count in sorted(summary.rejected.items()):
        table.add_row(f"  {reason}", str(count))
    return table
