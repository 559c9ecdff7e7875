"""Which defined metrics the stream keeps live, from the control topic; and quarantine.

A ``ControlFollower`` (a thread) folds the control topic into a ``ControlState``; every
experiment's metrics (and the tenant's metrics an active flag rollout guards, keyed by the
rollout's exposure key, ``schemas.flags.rollout_exposure_key``) that are ``kept_live``
(mean, ratio, attribution window, fixed cap, CUPED covariate: anything beyond an event's
conversion/count/sum, which the stream keeps for every event anyway) are compiled once
into ``LiveMetric``s. The worker calls ``apply(processor)`` between batches; when the set
differs, the processor's aggregates are rebuilt from the unit states, so a metric defined
after its events counts them too.

Each tenant's definitions are compiled and applied apart. A definition that fails, for
any exception (``window_hours: 1e300`` once raised ``OverflowError`` for every tenant,
and since the event stays on the control topic, again after every restart), is
quarantined: logged, counted, kept out of the live set, and reported as a
``DefinitionError`` record for the aggregates topic (``take_errors``), which the results
service shows on that experiment. Every other definition goes on. Compiling includes
evaluating the metric once on a small synthetic history, so arithmetic that fails
(overflow, a bad type) fails here and not on a unit's event; if rebuilding the
aggregates still fails, each experiment's metrics are tried on the owned units of that
experiment alone, and the failing ones are quarantined too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from analytics.unit_metrics import UnitMetric, unit_value
from schemas.aggregates import DefinitionError
from schemas.control import ControlEvent, RolloutDecided
from schemas.experiment import MetricDefinition
from schemas.flags import rollout_exposure_key
from schemas.limits import MAX_TEXT_CHARS
from services.control_domain.control_log import ControlFollower
from services.control_domain.control_state import ControlState, TenantState
from services.stream.attribution import LiveMetric, LiveMetrics, UnitState, unit_contributions
from services.stream.processor import SendRecord, StreamProcessor

log = logging.getLogger(__name__)

#: Control events that may change the metrics kept for a flag rollout (a decision may too,
#: when it ends the rollout).
_FLAG_ROLLOUT_CHANGES = frozenset({"rollout_defined", "rollout_aborted", "metric_defined"})
#: (tenant, experiment, metric, definition hash): one quarantined definition.
Subject = tuple[str, str, str, str]
CompiledLive = dict[tuple[str, str], tuple[LiveMetric, ...]]
_TRIAL_FIRST_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
_HOUR_US = 3_600_000_000


class Quarantined(NamedTuple):
    subject: Subject
    reason: str


class LiveProcessor(Protocol):
    """What ``apply`` needs of the stream processor."""

    units: dict[int, dict[bytes, UnitState]]

    def set_live(self, live: LiveMetrics) -> None: ...

    def revoke(self, partition: int) -> None: ...


def _reason(metric: str, error: BaseException) -> str:
    text = f"metric '{metric}' cannot be kept live and is quarantined: {type(error).__name__}: "
    text += str(error) or "(no message)"
    return text[:MAX_TEXT_CHARS]


def compile_metric(metric: MetricDefinition) -> LiveMetric:
    """The metric compiled for the stream, after one trial evaluation (raises whatever the
    definition makes the stream's code raise)."""
    compiled = UnitMetric.of(metric)
    history: dict[str, list[tuple[int, float]]] = {}
    for event in compiled.events:
        history[event] = [
            (_TRIAL_FIRST_US + offset * _HOUR_US, 2.0) for offset in (-48, -1, 0, 1, 48)
        ]
    unit_value(history, _TRIAL_FIRST_US, compiled)
    return LiveMetric(compiled, metric.definition_hash)


def compile_live(
    state: ControlState,
) -> tuple[dict[tuple[str, str], tuple[LiveMetric, ...]], list[Quarantined]]:
    """(tenant, experiment) -> the experiment's metrics kept live, in definition order; and
    the definitions that failed to compile, each with its reason."""
    live: CompiledLive = {}
    failed: list[Quarantined] = []
    for tenant_id, tenant in state.tenants.items():
        for key, entry in tenant.experiments.items():
            metrics: list[LiveMetric] = []
            for metric in entry.experiment.metrics:
                try:
                    if not metric.kept_live:
                        continue
                    metrics.append(compile_metric(metric))
                except Exception as error:
                    subject = (tenant_id, key, metric.name, _hash(metric))
                    failed.append(Quarantined(subject, _reason(metric.name, error)))
            if metrics:
                live[(tenant_id, key)] = tuple(metrics)
        for key, flag_metrics in _flag_rollout_metrics(tenant).items():
            compiled: list[LiveMetric] = []
            for metric in flag_metrics:
                try:
                    compiled.append(compile_metric(metric))
                except Exception as error:
                    subject = (tenant_id, key, metric.name, _hash(metric))
                    failed.append(Quarantined(subject, _reason(metric.name, error)))
            if compiled:
                live[(tenant_id, key)] = tuple(compiled)
    return live, failed


def _flag_rollout_metrics(tenant: TenantState) -> dict[str, list[MetricDefinition]]:
    """The active flag rollout's exposure key (``rollout_exposure_key``) -> the tenant's
    metrics kept live that it guards (a flag has no metrics of its own; its rollout's arms
    are its exposures under that key)."""
    found: dict[str, list[MetricDefinition]] = {}
    for key, entry in sorted(tenant.rollouts.items()):
        target = entry.plan.target
        if not entry.active or not target.is_flag:
            continue
        for guardrail in entry.plan.guardrails:
            defined = tenant.metrics.get(guardrail.metric)
            if defined is not None and defined.metric.kept_live:
                exposure_key = rollout_exposure_key(target.key, key, entry.plan.version)
                found.setdefault(exposure_key, []).append(defined.metric)
    return found


def _hash(metric: MetricDefinition) -> str:
    try:
        return metric.definition_hash
    except Exception:  # a definition that cannot even be hashed is still reported
        return "unknown"


def failing_on_units(processor: LiveProcessor, live: LiveMetrics) -> list[Quarantined]:
    """The live metrics that raise on some owned unit of their own experiment."""
    states = [state for units in processor.units.values() for state in units.values()]
    return failing_on_states(states, live)


def failing_on_states(states: list[UnitState], live: LiveMetrics) -> list[Quarantined]:
    """The live metrics that raise on one of ``states`` exposed to their experiment."""
    failed: list[Quarantined] = []
    for (tenant_id, experiment), metrics in live.items():
        exposed = [
            state
            for state in states
            if state.tenant_id == tenant_id and experiment in state.exposures
        ]
        for live_metric in metrics:
            alone = {(tenant_id, experiment): (live_metric,)}
            try:
                for state in exposed:
                    unit_contributions(state, alone)
            except Exception as error:
                name = live_metric.metric.name
                subject = (tenant_id, experiment, name, live_metric.definition_hash)
                failed.append(Quarantined(subject, _reason(name, error)))
    return failed


def without(live: LiveMetrics, subjects: Iterable[Subject]) -> LiveMetrics:
    """``live`` less the quarantined definitions."""
    dropped = set(subjects)
    kept: dict[tuple[str, str], tuple[LiveMetric, ...]] = {}
    for (tenant_id, experiment), metrics in live.items():
        left = tuple(
            metric
            for metric in metrics
            if (tenant_id, experiment, metric.metric.name, metric.definition_hash) not in dropped
        )
        if left:
            kept[(tenant_id, experiment)] = left
    return kept


#: How long the broker holds the follower's fetch that finds no new control event (ms).
DEFINITIONS_FETCH_WAIT_MS = 500


class MetricDefinitions:
    """Follows the control topic; applies the live metrics; quarantines failing ones."""

    def __init__(self, bootstrap: str, topic: str, client_id: str) -> None:
        self._dirty = threading.Event()
        self._dirty.set()
        # A held fetch is answered as soon as a definition arrives, so a long wait costs no
        # latency; the default (50 ms) made this thread's empty round trips take the GIL
        # from the worker's loop twenty times a second (a few % of its events/s).
        self._follower = ControlFollower(
            bootstrap,
            topic,
            client_id,
            on_applied=self._on_applied,
            fetch_max_wait_ms=DEFINITIONS_FETCH_WAIT_MS,
        )
        self._current: LiveMetrics = {}
        #: Every definition quarantined so far, with its reason (never retried: a new
        #: definition has a new hash).
        self.quarantined: dict[Subject, str] = {}
        self._unreported: list[Subject] = []

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def wait_until_caught_up(self, timeout: float) -> bool:
        return self._follower.wait_until_caught_up(timeout)

    def changed(self) -> LiveMetrics | None:
        """The live metrics (quarantined ones left out) if they differ from the last
        answer, else None."""
        if not self._dirty.is_set():
            return None
        self._dirty.clear()
        with self._follower.lock:
            try:
                live, failed = compile_live(self._follower.state)
            except Exception:  # a bug here must not stop the worker: keep what runs
                log.exception("compiling metric definitions failed; keeping the current ones")
                return None
        self.quarantine(failed)
        live = without(live, self.quarantined)
        if live == self._current:
            return None
        self._current = live
        return live

    def apply(self, processor: LiveProcessor) -> LiveMetrics | None:
        """Keep the changed live metrics, if any, in ``processor``; what it keeps now
        (None: nothing changed). Definitions that fail on the owned units are quarantined
        and the rest applied; nothing raises."""
        live = self.changed()
        if live is None:
            return None
        try:
            processor.set_live(live)
            return live
        except Exception:
            log.exception("rebuilding the aggregates with the live metrics failed")
        self.quarantine(failing_on_units(processor, live))
        live = without(live, self.quarantined)
        try:
            processor.set_live(live)
        except Exception:
            # Not attributable to one definition: keep only what every event has.
            log.exception("rebuilding the aggregates failed again; no defined metric kept live")
            self.quarantine(
                Quarantined(
                    (tenant_id, experiment, metric.metric.name, metric.definition_hash),
                    "the stream could not rebuild this experiment's metrics (see its log)",
                )
                for (tenant_id, experiment), metrics in live.items()
                for metric in metrics
            )
            live = {}
            processor.set_live(live)
        self._current = live
        return live

    def assign(
        self,
        processor: StreamProcessor,
        partition: int,
        units: dict[bytes, UnitState],
        next_offsets: dict[str, int],
    ) -> None:
        """``processor.assign`` of a partition taken in a rebalance, its restored units
        given the live metrics; a metric that fails on them is quarantined and the
        aggregates rebuilt without it, so one tenant's units never stop the worker."""
        try:
            processor.assign(partition, units, next_offsets)
            return
        except Exception:
            log.exception("rebuilding partition %d with the live metrics failed", partition)
        self.quarantine(failing_on_states(list(units.values()), processor.live))
        live = without(processor.live, self.quarantined)
        self._current = live
        processor.revoke(partition)  # half taken: its sums were not built
        processor.set_live(live)
        processor.assign(partition, units, next_offsets)

    def quarantine(self, failures: Iterable[Quarantined]) -> None:
        for subject, reason in failures:
            if subject in self.quarantined:
                continue
            self.quarantined[subject] = reason
            self._unreported.append(subject)
            tenant_id, experiment, metric, _ = subject
            log.error(
                "quarantined metric %s of experiment %s of tenant %s (%d quarantined): %s",
                metric,
                experiment,
                tenant_id,
                len(self.quarantined),
                reason,
            )

    def take_errors(self) -> list[DefinitionError]:
        """Records for the definitions quarantined since the last call (give back the
        ones not delivered with ``return_errors``)."""
        now = datetime.now(UTC)
        records = []
        for subject in self._unreported:
            tenant_id, experiment, metric, definition_hash = subject
            try:
                records.append(
                    DefinitionError(
                        updated_at=now,
                        tenant_id=tenant_id,
                        experiment_key=experiment,
                        metric=metric,
                        definition_hash=definition_hash,
                        reason=self.quarantined[subject],
                    )
                )
            except Exception:  # names the contract refuses are only logged
                log.exception("cannot report the quarantine of %s", subject)
        self._unreported = []
        return records

    def return_errors(self, records: Iterable[DefinitionError]) -> None:
        self._unreported.extend(
            (r.tenant_id, r.experiment_key, r.metric, r.definition_hash) for r in records
        )

    async def publish_errors(self, send: SendRecord) -> int:
        """Enqueue the new quarantine records for the aggregates topic with ``send``;
        the ones that could not be enqueued are kept for the next call."""
        records = self.take_errors()
        for index, record in enumerate(records):
            try:
                await send(record.record_key, record.model_dump_json().encode())
            except Exception:
                log.exception("could not publish a quarantine record; will retry")
                self.return_errors(records[index:])
                return index
        return len(records)

    def _on_applied(self, offset: int, event: ControlEvent, state: ControlState) -> None:
        if event.type.startswith("experiment_") or event.type in _FLAG_ROLLOUT_CHANGES:
            self._dirty.set()
        elif isinstance(event, RolloutDecided) and event.decision in ("rollback", "complete"):
            self._dirty.set()  # a flag rollout that ends stops keeping its metrics
