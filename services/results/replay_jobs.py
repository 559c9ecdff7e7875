"""Replay jobs: back-fill a metric from the raw log in a background thread, with progress.

``ReplayJobs.start`` resolves what to replay before it returns, so a bad request fails at
once: the tenant's experiments (or the one asked for), and per experiment the metric's
definition there, else the tenant's metric of that name (its latest ``metric_defined``
control event). The thread then replays each experiment (``analytics.replay``), stores
its sums in ``replayed_metric_stats`` (one transaction per experiment) and counts units
done for ``GET .../replays/{id}``. A tenant runs one replay at a time (another is
refused until it ends). Jobs live in memory; the latest ``KEPT_JOBS`` are kept.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from analytics import queries
from analytics.replay import count_units, replay_metric
from analytics.store import AnalyticsStore
from schemas.control import MetricDefined
from schemas.experiment import Experiment, MetricDefinition
from schemas.identifiers import Key

log = logging.getLogger("services.results.replay")

KEPT_JOBS = 100


class ReplayRequest(BaseModel):
    """``POST /v1/tenants/{tenant}/replays``."""

    model_config = ConfigDict(extra="forbid")

    metric: Key
    since: AwareDatetime | None = None
    experiment: Key | None = None


class UnknownReplayTarget(LookupError):
    """No such experiment, or no definition of the metric for the tenant."""


class ReplayRunning(RuntimeError):
    """The tenant already has a replay running (one at a time per tenant: a replay reads
    the tenant's whole raw log)."""


@dataclass
class ReplayJob:
    job_id: str
    tenant_id: str
    metric: str
    since: datetime | None
    targets: list[tuple[Experiment, MetricDefinition]]
    status: Literal["running", "done", "failed"] = "running"
    done_units: int = 0
    total_units: int = 0
    error: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Why nothing was replayed, when the raw log holds no unit to replay.
    note: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "metric": self.metric,
            "since": None if self.since is None else self.since.isoformat(),
            "experiments": [experiment.key for experiment, _ in self.targets],
            "status": self.status,
            "done_units": self.done_units,
            "total_units": self.total_units,
            "error": self.error,
            "results": self.results,
            "note": self.note,
        }


class ReplayJobs:
    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store
        self._jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, tenant_id: str, request: ReplayRequest) -> dict[str, Any]:
        """Start replaying; the job's document. Raises ``UnknownReplayTarget``, and
        ``ReplayRunning`` while another replay of the tenant runs."""
        targets = self._targets(tenant_id, request)
        job = ReplayJob(uuid.uuid4().hex, tenant_id, request.metric, request.since, targets)
        with self._lock:
            running = [
                other.job_id
                for other in self._jobs.values()
                if other.tenant_id == tenant_id and other.status == "running"
            ]
            if running:
                raise ReplayRunning(
                    f"tenant '{tenant_id}' has a replay running (job {running[0]}); one at a "
                    "time: wait for it to end"
                )
            self._jobs[job.job_id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)
            document = job.document()
        threading.Thread(
            target=self._run, args=(job,), name=f"replay-{job.job_id}", daemon=True
        ).start()
        return document

    def get(self, tenant_id: str, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None or job.tenant_id != tenant_id else job.document()

    def _targets(
        self, tenant_id: str, request: ReplayRequest
    ) -> list[tuple[Experiment, MetricDefinition]]:
        with self._store.cursor() as cursor:
            if request.experiment is None:
                experiments = [view.experiment for view in queries.experiments(cursor, tenant_id)]
            else:
                view = queries.experiment(cursor, tenant_id, request.experiment)
                if view is None:
                    raise UnknownReplayTarget(
                        f"experiment: '{request.experiment}' is not defined for tenant "
                        f"'{tenant_id}'"
                    )
                experiments = [view.experiment]
            row = cursor.execute(
                """SELECT payload FROM control_events
                   WHERE tenant_id = ? AND type = 'metric_defined' AND experiment_key = ?
                   ORDER BY occurred_at DESC, kafka_offset DESC LIMIT 1""",
                [tenant_id, request.metric],
            ).fetchone()
        tenant_metric = None if row is None else MetricDefined.model_validate_json(row[0]).metric
        targets = []
        for experiment in experiments:
            own = [metric for metric in experiment.metrics if metric.name == request.metric]
            definition = own[0] if own else tenant_metric
            if definition is not None:
                targets.append((experiment, definition))
        if not targets:
            where = "" if request.experiment is None else f" or experiment '{request.experiment}'"
            raise UnknownReplayTarget(
                f"metric: '{request.metric}' is not a metric of tenant '{tenant_id}'{where}; "
                "define it with `liftstream metric apply -f FILE` first"
            )
        return targets

    def _run(self, job: ReplayJob) -> None:
        try:
            with self._store.cursor() as cursor:
                totals = [
                    count_units(cursor, job.tenant_id, experiment.key, job.since)
                    for experiment, _ in job.targets
                ]
                with self._lock:
                    job.total_units = sum(totals)
                    if not job.total_units:
                        job.note = self._nothing_to_replay(job)
                base = 0
                for (experiment, metric), total in zip(job.targets, totals, strict=True):
                    self._replay_one(cursor, job, experiment, metric, base)
                    base += total
            with self._lock:
                job.status = "done"
        except Exception as error:  # the job reports it; the service keeps serving
            log.exception("replay %s of metric %s failed", job.job_id, job.metric)
            with self._lock:
                job.status, job.error = "failed", f"{type(error).__name__}: {error}"

    @staticmethod
    def _nothing_to_replay(job: ReplayJob) -> str:
        experiments = ", ".join(f"'{experiment.key}'" for experiment, _ in job.targets)
        since = "" if job.since is None else f" first exposed at or after {job.since.isoformat()}"
        return (
            f"nothing to replay: the raw log of tenant '{job.tenant_id}' holds no unit{since} "
            f"of experiment {experiments} (exposures not sent yet, not loaded yet, or all "
            "seen in several variants); metric "
            f"'{job.metric}' keeps zero sums"
        )

    def _replay_one(
        self,
        cursor: Any,
        job: ReplayJob,
        experiment: Experiment,
        metric: MetricDefinition,
        base: int,
    ) -> None:
        def progress(done: int, _total: int) -> None:
            with self._lock:
                job.done_units = base + done

        result = replay_metric(
            cursor,
            job.tenant_id,
            experiment.key,
            metric,
            since=job.since,
            variants=[variant.key for variant in experiment.variants],
            progress=progress,
        )
        replayed_at = datetime.now(UTC)
        rows = [
            {
                "tenant_id": job.tenant_id,
                "experiment_key": experiment.key,
                "variant_key": variant,
                "metric": job.metric,
                "definition": metric.model_dump_json(),
                "n": sums.n,
                "sum_x": sums.sum_x,
                "sum_xx": sums.sum_xx,
                "sum_y": sums.sum_y,
                "sum_yy": sums.sum_yy,
                "sum_xy": sums.sum_xy,
                "sum_c": sums.sum_c,
                "sum_cc": sums.sum_cc,
                "sum_xc": sums.sum_xc,
                "excluded_units": result.excluded.get(variant, 0),
                "cap_value": result.cap,
                "since": job.since,
                "replayed_at": replayed_at,
            }
            for variant, sums in sorted(result.sums.items())
        ]
        self._store.save_replay(rows)
        with self._lock:
            job.results.extend(
                {
                    key: value.isoformat() if isinstance(value, datetime) else value
                    for key, value in row.items()
                    if key not in ("tenant_id", "metric", "definition")
                }
                for row in rows
            )
