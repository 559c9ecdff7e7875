"""``liftstream replay --metric M``: back-fill a metric from the raw log, with a progress bar.

Starts a replay job on the results service (``POST /v1/tenants/{tenant}/replays``), polls
it while a rich progress bar counts units (on stderr), then prints each experiment's
per-variant sums (a table, or the job's JSON with ``--json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from liftstream.errors import InvalidInputError
from liftstream_cli.console import err
from liftstream_cli.results_api import ResultsApi, ResultsServiceError
from schemas.errors import FieldError

POLL_S = 0.2


def parse_since(text: str | None) -> str | None:
    """``--since`` as an ISO 8601 instant; without a time zone (``2026-03-01``) it is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        reason = f"'{text}' is not a date (2026-03-01) or an ISO 8601 time"
        raise InvalidInputError(
            "bad option", [FieldError(field="--since", reason=reason)]
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def run_replay(
    api: ResultsApi,
    tenant_id: str,
    metric: str,
    since: str | None,
    experiment: str | None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start the job, show its progress until it ends; the final job document. A job
    with no unit to replay ends without a progress bar: its ``note`` says why."""
    request = {"metric": metric, "since": since, "experiment": experiment}
    job = api.start_replay(tenant_id, request)
    # The job counts its units first: show a bar only once there is something to count.
    while job["status"] == "running" and not job["total_units"]:
        sleep(POLL_S)
        job = api.replay_job(tenant_id, job["job_id"])
    if job["status"] == "running" or job["total_units"]:
        job = _with_progress(api, tenant_id, metric, job, sleep)
    if job["status"] == "failed":
        raise ResultsServiceError(f"the replay of metric '{metric}' failed: {job['error']}")
    return job


def _with_progress(
    api: ResultsApi,
    tenant_id: str,
    metric: str,
    job: dict[str, Any],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    with Progress(
        TextColumn(f"replaying {metric}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("units"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("replay", total=None)
        while True:
            bar.update(task, total=job["total_units"] or None, completed=job["done_units"])
            if job["status"] != "running":
                break
            sleep(POLL_S)
            job = api.replay_job(tenant_id, job["job_id"])
    return job


def sums_table(job: dict[str, Any]) -> Table:
    """The job's per-variant sums, one row per experiment and variant."""
    table = Table(title=f"metric {job['metric']} replayed from the raw log")
    columns = ["experiment_key", "variant_key", "n", "sum_x", "sum_xx", "sum_y", "sum_c"]
    for name in [*columns, "excluded_units", "cap_value"]:
        table.add_column(name.replace("_key", ""), justify="left" if "key" in name else "right")
    for row in job["results"]:
        cells = [row[name] for name in [*columns, "excluded_units", "cap_value"]]
        table.add_row(
            *(
                "" if cell is None else f"{cell:.6g}" if isinstance(cell, float) else str(cell)
                for cell in cells
            )
        )
    return table
