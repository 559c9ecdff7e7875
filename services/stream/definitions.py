"""Which defined metrics the stream keeps live, from the control topic.

A ``ControlFollower`` (a thread) folds the control topic into a ``ControlState``; every
experiment's metrics that are ``kept_live`` (mean, ratio, attribution window, fixed cap,
CUPED covariate: anything beyond an event's conversion/count/sum, which the stream keeps
for every event anyway) are compiled once into ``LiveMetric``s. The worker asks
``changed()`` between batches and, when the set differs, rebuilds its aggregates from
the unit states, so a metric defined after its events were sent counts them too.
"""

from __future__ import annotations

import threading

from analytics.unit_metrics import UnitMetric
from liftstream.control_log import ControlFollower
from liftstream.control_state import ControlState
from schemas.control import ControlEvent
from services.stream.attribution import LiveMetric, LiveMetrics


def live_metrics(state: ControlState) -> dict[tuple[str, str], tuple[LiveMetric, ...]]:
    """(tenant, experiment) -> the experiment's metrics kept live, in definition order."""
    live: dict[tuple[str, str], tuple[LiveMetric, ...]] = {}
    for tenant_id, tenant in state.tenants.items():
        for key, entry in tenant.experiments.items():
            metrics = tuple(
                LiveMetric(UnitMetric.of(metric), metric.definition_hash)
                for metric in entry.experiment.metrics
                if metric.kept_live
            )
            if metrics:
                live[(tenant_id, key)] = metrics
    return live


class MetricDefinitions:
    """Follows the control topic; says when the live metrics change."""

    def __init__(self, bootstrap: str, topic: str, client_id: str) -> None:
        self._dirty = threading.Event()
        self._dirty.set()
        self._follower = ControlFollower(bootstrap, topic, client_id, on_applied=self._on_applied)
        self._current: LiveMetrics = {}

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def wait_until_caught_up(self, timeout: float) -> bool:
        return self._follower.wait_until_caught_up(timeout)

    def changed(self) -> LiveMetrics | None:
        """The live metrics if they differ from the last answer, else None."""
        if not self._dirty.is_set():
            return None
        self._dirty.clear()
        with self._follower.lock:
            live = live_metrics(self._follower.state)
        if live == self._current:
            return None
        self._current = live
        return live

    def _on_applied(self, offset: int, event: ControlEvent, state: ControlState) -> None:
        if event.type.startswith("experiment_"):
            self._dirty.set()
