"""Rollouts under ``/v1/tenants/{tenant}/rollouts``: list, apply a plan (``PUT``), read,
the decision trail, and a person's approve, pause, resume and abort; the tenant's
webhook signing secret.

Reads take ``admin`` or ``read`` keys, changes and the secret ``admin`` keys. A plan is
checked against the projection (``services.control.rollout_commands``): a refusal names
the field. Its webhook URLs must pass the SSRF policy (``services.webhook_policy``:
public addresses only, unless the operator allows more): 422 naming ``webhooks.N.url``.
Decisions are written by the controller, never through this API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from schemas.control import RolloutCommanded, RolloutDecided
from schemas.identifiers import Key, TenantId
from schemas.rollout_api import (
    MAX_CHANGES_SHOWN,
    MAX_DECISIONS_PER_ANSWER,
    RolloutChange,
    RolloutChangeResult,
    RolloutCommandBody,
    RolloutDecisionView,
    RolloutState,
    RolloutWrite,
    WebhookSecret,
)
from services.control.backend import ControlBackend
from services.control.deps import AdminKey, BackendDep, ReaderKey, WriterDep
from services.control.lookups import refuse, rollout_entry
from services.control.rollout_commands import RolloutAction, command_rollout, define_rollout
from services.control.routers.paths import same_as_path
from services.control_domain.rollout_state import RolloutEntry
from services.webhook_policy import WebhookRefused, webhook_policy
from services.webhook_signing import SECRET_ENV, operator_secret, tenant_secret

router = APIRouter(prefix="/v1/tenants/{tenant}/rollouts", tags=["rollouts"])


def decision_view(offset: int, event: RolloutDecided) -> RolloutDecisionView:
    return RolloutDecisionView(
        offset=offset,
        event_id=event.event_id,
        author=event.author,
        occurred_at=event.occurred_at,
        plan_version=event.plan_version,
        check_index=event.check_index,
        decision=event.decision,
        step=event.step_index + 1,
        percent=event.percent,
        notify=event.notify,
        reason=event.reason,
        evidence=event.evidence,
    )


def rollout_state(tenant_id: str, key: str, entry: RolloutEntry) -> RolloutState:
    changes = [
        RolloutChange(
            offset=offset,
            type=event.type,
            author=event.author,
            reason=event.reason,
            occurred_at=event.occurred_at,
            plan_version=event.plan_version
            if isinstance(event, RolloutCommanded)
            else event.plan.version,
            step=(
                event.step_index + 1
                if isinstance(event, RolloutCommanded) and event.step_index is not None
                else None
            ),
        )
        for offset, event in entry.changes[-MAX_CHANGES_SHOWN:]
    ]
    last = entry.decisions[-1] if entry.decisions else None
    return RolloutState(
        tenant_id=tenant_id,
        key=key,
        status=entry.status,
        step=entry.step_index + 1,
        percent=entry.percent,
        started_at=entry.started_at,
        step_started_at=entry.step_started_at,
        approved_steps=sorted(step + 1 for step in entry.approved_steps),
        checks=entry.checks,
        automatic_rollbacks=entry.automatic_rollbacks,
        entered=entry.entered,
        versions=sorted(entry.versions),
        plan=entry.plan,
        last_decision=None if last is None else decision_view(*last),
        changes=changes,
    )


def _state(backend: ControlBackend, tenant_id: str, key: str) -> RolloutState:
    with backend.lock:
        return rollout_state(tenant_id, key, rollout_entry(backend.state, tenant_id, key))


@router.get("")
def list_rollouts(tenant: TenantId, caller: ReaderKey, backend: BackendDep) -> list[RolloutState]:
    with backend.lock:
        state = backend.state.tenant(tenant)
        rollouts = {} if state is None else state.rollouts
        return [rollout_state(tenant, key, entry) for key, entry in sorted(rollouts.items())]


@router.get("/webhook-secret")
def webhook_secret(tenant: TenantId, caller: AdminKey) -> WebhookSecret:
    """The key that signs this tenant's webhook calls (derived; never stored)."""
    operator = operator_secret()
    if operator is None:
        raise HTTPException(503, f"webhooks are unsigned: the operator has not set {SECRET_ENV}")
    return WebhookSecret(secret=tenant_secret(operator, tenant))


@router.put("/{key}")
def apply_rollout(
    tenant: TenantId,
    key: Key,
    body: RolloutWrite,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> RolloutChangeResult:
    """Create the rollout, or give it its next plan version (re-applying changes nothing)."""
    same_as_path("plan.key", body.plan.key, key)
    policy = webhook_policy()
    for index, hook in enumerate(body.plan.webhooks):
        try:
            policy.check(hook.url)
        except WebhookRefused as refused:
            raise refuse(
                422, "cannot apply the rollout plan", f"webhooks.{index}.url", str(refused)
            ) from None
    written = writer.write(
        caller, lambda author: define_rollout(backend.state, author, body.plan, body.reason)
    )
    return written.result(RolloutChangeResult, rollout=_state(backend, tenant, key))


@router.get("/{key}")
def get_rollout(tenant: TenantId, key: Key, caller: ReaderKey, backend: BackendDep) -> RolloutState:
    return _state(backend, tenant, key)


@router.get("/{key}/decisions")
def rollout_decisions(
    tenant: TenantId,
    key: Key,
    caller: ReaderKey,
    backend: BackendDep,
    since_check: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_DECISIONS_PER_ANSWER)] = 100,
) -> list[RolloutDecisionView]:
    """Decisions of every plan version, oldest first; ``since_check`` skips earlier checks
    of the current version's numbering."""
    with backend.lock:
        entry = rollout_entry(backend.state, tenant, key)
        chosen = [
            decision_view(offset, event)
            for offset, event in entry.decisions
            if event.check_index >= since_check or event.plan_version != entry.plan.version
        ]
    return chosen[-limit:]


def _command(action: RolloutAction):  # type: ignore[no-untyped-def]
    def route(
        tenant: TenantId,
        key: Key,
        caller: AdminKey,
        backend: BackendDep,
        writer: WriterDep,
        body: RolloutCommandBody | None = None,
    ) -> RolloutChangeResult:
        request = body or RolloutCommandBody()
        written = writer.write(
            caller,
            lambda author: command_rollout(
                backend.state, author, key, action, request.reason, request.step
            ),
        )
        return written.result(RolloutChangeResult, rollout=_state(backend, tenant, key))

    route.__name__ = f"{action}_rollout"
    route.__doc__ = f"{action.capitalize()} the rollout (a person's command, with its reason)."
    return route


for _action in ("approve", "pause", "resume", "abort"):
    router.post(f"/{{key}}/{_action}")(_command(_action))  # type: ignore[arg-type]
