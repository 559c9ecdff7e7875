"""The controller's check loop on an in-memory control log: a person's command that
reaches the log while a check runs (between its read and its write) voids that
decision; the next check sees the command, and replaying the log agrees."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from schemas.aggregates import MetricStats, VariantUnits
from schemas.control import ControlEvent, RolloutDecided, control_event_json
from services.control.rollout_commands import command_rollout
from services.control_domain.control_log import ControlProjection, decode_control_event
from services.controller.aggregates import AggregateView
from services.controller.checks import Controller
from services.controller.replay import replay
from tests.unit.test_rollout_projection import AUTHOR, T0, applied


class _Record(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes


def _view() -> AggregateView:
    """Both arms with 50 units and one error each (enough for the first step)."""
    view = AggregateView("aggregates", "deadletter")
    for offset, variant in enumerate(("control", "candidate")):
        common = {
            "tenant_id": "acme",
            "experiment_key": "checkout",
            "variant_key": variant,
            "source_partition": 0,
            "updated_at": T0,
        }
        units = VariantUnits(units=50, **common)
        errors = MetricStats(
            event="request_error", aggregation="count", sum=1, sum_sq=1.5, **common
        )
        for index, record in enumerate((units, errors)):
            view.apply("aggregates", 0, 2 * offset + index, record.model_dump_json().encode(), 0)
    return view


class _Sender:
    def submit(self, call: object) -> None:
        raise AssertionError("the plan has no webhooks")


def test_an_approval_written_while_a_check_runs_voids_it_and_the_next_check_sees_it() -> None:
    log: list[bytes] = []
    projection = ControlProjection()

    def append(event: ControlEvent) -> int:
        log.append(control_event_json(event))
        projection.apply([_Record(len(log) - 1, None, log[-1])])
        return len(log) - 1

    for _, event in applied().events:
        append(event)
    approvals = 0

    def publish(event: ControlEvent) -> int:
        nonlocal approvals
        if approvals == 0:  # a person approves just before the decision is written
            approvals += 1
            with projection.lock:
                approve = command_rollout(projection.state, AUTHOR, "new-checkout", "approve", "")
            assert approve is not None
            append(approve)
        return append(event)

    controller = Controller(
        projection,
        _view(),
        publish,
        _Sender(),  # type: ignore[arg-type]
        None,
        clock=lambda: T0 + timedelta(seconds=10),
    )
    assert controller.run_once() == 0  # written, but read before the approval: void
    entry = projection.state.tenants["acme"].rollouts["new-checkout"]
    assert (entry.checks, entry.step_index) == (0, 0)
    assert controller.run_once() == 1
    assert (entry.checks, entry.step_index) == (1, 1)  # advanced: the approval was seen
    events = [(offset, decode_control_event(value)) for offset, value in enumerate(log)]
    decided = [e for _, e in events if isinstance(e, RolloutDecided)]
    assert [d.check_index for d in decided] == [0, 0]
    assert [d.decision for d in decided] == ["hold", "advance"]
    assert replay(events) == (1, [])
