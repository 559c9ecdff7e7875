"""The controller's loop: which rollouts are due, what each check reads, what it writes.

A rollout is due ``check_interval_s`` after its last decision (or after it started). A
check gathers ``CheckInputs`` (the arms' sufficient statistics from ``AggregateView``: an
experiment's control and candidate, or a flag's ``off`` holdback and ``on`` arms,
the tenant's dead letters since the start, the time; before the first step of a plan with
an entry gate, the shadow gate from the results service, ``ShadowGates``), calls the pure
``decide`` and writes a ``RolloutDecided`` event whose id is derived from (tenant,
rollout, plan version, check index), then waits until the control log has applied it
before checking that rollout again. So a controller killed at any point neither repeats a
decision (the projection already counts the checks written, and ignores a check index
written twice) nor loses one (a check that never reached the log is made again). Each
decision carries the offset its check read the projection at (``read_offset``): one the
projection finds read too early (a person's command of the rollout reached the log
between the read and the write) is void and the check is made again, so every decision
the log keeps was made on the projection as the log stands just before it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from analytics.rollouts.decide import RolloutView, decide
from schemas.control import ControlEvent, RolloutDecided
from schemas.flags import OFF_VARIANT, rollout_exposure_key
from schemas.limits import MAX_TEXT_CHARS, clip
from schemas.rollout import CheckInputs, ShadowGateInput
from services.control_domain.control_log import ControlProjection
from services.control_domain.control_state import ControlState, TenantState
from services.control_domain.rollout_state import RolloutEntry
from services.controller.aggregates import AggregateView
from services.controller.deliveries import DeliveryLog
from services.controller.gates import ShadowGates
from services.controller.webhooks import WebhookCall, WebhookSender
from services.webhook_signing import tenant_secret

log = logging.getLogger(__name__)

AUTHOR = "controller"
#: Decisions older than this are not sent again after a restart (a day).
DEFAULT_RESEND_S = 24 * 3600.0
_DECISION_NAMESPACE = uuid.UUID("6f1d0f8e-6a39-4a8e-9d55-1f2d3c4b5a69")


def decision_id(tenant_id: str, key: str, plan_version: int, check_index: int) -> uuid.UUID:
    """The same check of the same plan version always gets the same event id."""
    return uuid.uuid5(_DECISION_NAMESPACE, f"{tenant_id}|{key}|{plan_version}|{check_index}")


@dataclass(frozen=True)
class DueCheck:
    tenant_id: str
    key: str
    plan_version: int
    check_index: int
    view: RolloutView
    #: The projection's next offset when ``view`` was read (the decision's ``read_offset``).
    read_offset: int | None = None


def _last_check_at(entry: RolloutEntry) -> datetime:
    """When the current plan version was last checked (its start if never)."""
    if entry.decisions:
        _, last = entry.decisions[-1]
        if last.plan_version == entry.plan.version:
            return max(last.evidence.inputs.as_of, entry.started_at)
    return entry.started_at


def _target_exists(tenant: TenantState, entry: RolloutEntry) -> bool:
    target = entry.plan.target
    return target.key in (tenant.flags if target.is_flag else tenant.experiments)


def due_checks(state: ControlState, now: datetime) -> list[DueCheck]:
    """Every active rollout whose interval has passed since its last check (read under
    the follower's lock)."""
    due = []
    for tenant_id, tenant in sorted(state.tenants.items()):
        for key, entry in sorted(tenant.rollouts.items()):
            if not entry.active or not _target_exists(tenant, entry):
                continue
            interval = timedelta(seconds=entry.plan.check_interval_s)
            if now - _last_check_at(entry) < interval:
                continue
            view = RolloutView(
                plan=entry.plan,
                step_index=entry.step_index,
                step_started_at=entry.step_started_at,
                started_at=entry.started_at,
                approved_steps=frozenset(entry.approved_steps),
                paused=entry.status == "paused",
                entered=entry.entered,
            )
            due.append(
                DueCheck(tenant_id, key, entry.plan.version, entry.checks, view, state.next_offset)
            )
    return due


def _taken(state: ControlState, offset: int, event: RolloutDecided) -> bool:
    """Whether the projection took the decision at ``offset`` (not a duplicate, not void)."""
    tenant = state.tenant(event.tenant_id)
    entry = None if tenant is None else tenant.rollouts.get(event.key)
    return entry is not None and bool(entry.decisions) and entry.decisions[-1][0] == offset


def _still_due(state: ControlState, check: DueCheck, now: datetime) -> DueCheck | None:
    """``check`` as the projection gives it now (None if no longer due)."""
    for due in due_checks(state, now):
        if (due.tenant_id, due.key) == (check.tenant_id, check.key):
            return due
    return None


def gather_inputs(
    state: ControlState,
    aggregates: AggregateView,
    due: DueCheck,
    now: datetime,
    entry_gate: ShadowGateInput | None = None,
) -> CheckInputs:
    """The arms' statistics: an experiment's control and candidate variants, with the
    experiment's metrics and weights; a flag's ``off`` (the holdback) and ``on`` arms,
    equal by construction, with the tenant's metrics of those names, read under this
    rollout's and plan version's exposure key (an earlier rollout's units never count)."""
    tenant = state.tenants[due.tenant_id]
    plan = due.view.plan
    guarded = {guardrail.metric for guardrail in plan.guardrails}
    if plan.target.is_flag:
        metrics = [
            entry.metric for name, entry in sorted(tenant.metrics.items()) if name in guarded
        ]
        control = OFF_VARIANT
        control_weight = treatment_weight = 50.0
    else:
        experiment = tenant.experiments[plan.target.key].experiment
        metrics = [metric for metric in experiment.metrics if metric.name in guarded]
        weights = experiment.variant_weights()
        control = experiment.control_key
        control_weight, treatment_weight = weights[control], weights[plan.target.candidate]
    key = (
        rollout_exposure_key(plan.target.key, due.key, due.plan_version)
        if plan.target.is_flag
        else plan.target.key
    )
    return CheckInputs(
        as_of=now,
        control=aggregates.arm(due.tenant_id, key, control, metrics),
        treatment=aggregates.arm(due.tenant_id, key, plan.target.candidate, metrics),
        ratio_metrics=[metric.name for metric in metrics if metric.is_ratio],
        dead_letters=aggregates.dead_letters_since(due.tenant_id, due.view.started_at),
        control_weight=control_weight,
        treatment_weight=treatment_weight,
        entry_gate=entry_gate,
    )


def decision_event(due: DueCheck, inputs: CheckInputs) -> RolloutDecided:
    outcome = decide(due.view, inputs)
    reason = outcome.evidence.reasons[0] if outcome.evidence.reasons else ""
    return RolloutDecided(
        event_id=decision_id(due.tenant_id, due.key, due.plan_version, due.check_index),
        tenant_id=due.tenant_id,
        author=AUTHOR,
        reason=clip(reason, MAX_TEXT_CHARS),
        occurred_at=inputs.as_of,
        key=due.key,
        plan_version=due.plan_version,
        check_index=due.check_index,
        decision=outcome.decision,
        step_index=outcome.step_index,
        percent=outcome.percent,
        notify=outcome.notify,
        evidence=outcome.evidence,
        read_offset=due.read_offset,
    )


def webhook_body(event: RolloutDecided) -> bytes:
    return orjson.dumps(
        {
            "type": "rollout.decision",
            "tenant_id": event.tenant_id,
            "rollout": event.key,
            "plan_version": event.plan_version,
            "check_index": event.check_index,
            "decision": event.decision,
            "step": event.step_index + 1,
            "percent": event.percent,
            "notify": event.notify,
            "reason": event.reason,
            "event_id": str(event.event_id),
            "occurred_at": event.occurred_at.isoformat(),
            "evidence": event.evidence.model_dump(mode="json", exclude={"inputs"}),
        }
    )


class Controller:
    """Checks due rollouts; ``publish`` writes an event and returns its offset."""

    def __init__(
        self,
        follower: ControlProjection,
        aggregates: AggregateView,
        publish: Callable[[ControlEvent], int],
        webhooks: WebhookSender,
        operator_secret: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gates: ShadowGates | None = None,
        deliveries: DeliveryLog | None = None,
        resend_s: float = DEFAULT_RESEND_S,
    ) -> None:
        self.follower = follower
        self.aggregates = aggregates
        self.publish = publish
        self.webhooks = webhooks
        self.operator_secret = operator_secret
        self.clock = clock
        self.gates = gates or ShadowGates("", None)
        self.deliveries = deliveries or DeliveryLog(None)
        self.resend_s = resend_s
        self.resent = 0
        self.checks = 0
        self.errors = 0

    def on_applied(self, _offset: int, event: ControlEvent, state: ControlState) -> None:
        """The follower's hook: a decision read from the log is sent to the plan's
        webhooks. One read while catching up (at start-up) is sent again only if its calls
        are not settled (``DeliveryLog``: a previous process died before it could deliver
        them) and it is younger than ``resend_s``."""
        if not isinstance(event, RolloutDecided) or not _taken(state, _offset, event):
            return
        catching_up = not self.follower.wait_until_caught_up(0)
        if catching_up and (
            self.deliveries.fresh
            or (self.clock() - event.occurred_at).total_seconds() > self.resend_s
        ):
            return
        tenant = state.tenant(event.tenant_id)
        entry = None if tenant is None else tenant.rollouts.get(event.key)
        plan = None if entry is None else entry.versions.get(event.plan_version)
        if plan is None or not plan.webhooks:
            return
        body = webhook_body(event)
        secret = (
            None
            if self.operator_secret is None
            else tenant_secret(self.operator_secret, event.tenant_id)
        )
        event_id = str(event.event_id)
        for hook in plan.webhooks:
            if self.deliveries.settled(event_id, hook.url):
                continue
            if catching_up:
                self.resent += 1
                log.info("sending again the pending webhook call %s to %s", event_id, hook.url)
            self.webhooks.submit(WebhookCall(event.tenant_id, hook.url, event_id, body, secret))

    def run_once(self) -> int:
        """Make every due check; how many decisions were written."""
        now = self.clock()
        with self.follower.lock:
            due = due_checks(self.follower.state, now)
        written = 0
        for check in due:
            try:
                gate = None
                wanted = check.view.plan.entry_gate
                if not check.view.entered and wanted is not None:
                    gate = self.gates.read(check.tenant_id, wanted)  # outside the lock: HTTP
                with self.follower.lock:
                    # The view as it is now, not as it was when the due checks were listed:
                    # a change applied since (an approval, a pause) comes before this
                    # decision in the log, and replay reads the view there. Only the write
                    # itself is left to race with another writer.
                    current = _still_due(self.follower.state, check, now)
                    if current is None:
                        continue
                    check = current
                    inputs = gather_inputs(self.follower.state, self.aggregates, check, now, gate)
                    event = decision_event(check, inputs)
                offset = self.publish(event)
                self.follower.wait_until_applied(offset, 30.0)
                with self.follower.lock:
                    taken = _taken(self.follower.state, offset, event)
                if not taken and self.follower.state.next_offset > offset:
                    # A change of the rollout reached the log between the read and the
                    # write: the decision is void; the next tick makes the check again.
                    log.info(
                        "%s/%s check %d read before a change of the rollout: made again",
                        check.tenant_id,
                        check.key,
                        check.check_index,
                    )
                    continue
                self.checks += 1
                written += 1
                log.info(
                    "%s/%s check %d: %s (%s)",
                    check.tenant_id,
                    check.key,
                    check.check_index,
                    event.decision,
                    event.reason,
                )
            except Exception:  # one rollout's failure must not stop the others
                self.errors += 1
                log.exception("checking rollout %s/%s failed", check.tenant_id, check.key)
        return written
