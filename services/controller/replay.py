"""Replaying the control log through the decision function: the same decisions, exactly.

Each ``RolloutDecided`` keeps the inputs its check read (``evidence.inputs``). Folding the
log from the start and, just before each decision, rebuilding the check the controller
made from the projection as it then stood and calling ``decide`` on the recorded inputs
must give the logged event, field for field (``event_id`` included: it is derived from
the plan version and check index). Decisions the projection ignores (a check index
already decided, a decision read too early: ``rollout_state.read_too_early``) are not
replayed. ``replay`` returns what differs; empty means the log is reproduced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from schemas.control import ControlEvent, RolloutDecided
from services.control_domain.control_state import ControlState
from services.control_domain.rollout_state import read_too_early
from services.controller.checks import DueCheck, decision_event, due_checks


def replay(events: Iterable[tuple[int, ControlEvent]]) -> tuple[int, list[str]]:
    """(decisions replayed, the differences found)."""
    state = ControlState()
    replayed = 0
    differences: list[str] = []
    for offset, event in events:
        if isinstance(event, RolloutDecided):
            tenant = state.tenant(event.tenant_id)
            entry = None if tenant is None else tenant.rollouts.get(event.key)
            if (
                entry is not None
                and entry.active
                and event.check_index == entry.checks
                and not read_too_early(entry, event)
            ):
                due = _check_at(state, event)
                if due is None:
                    differences.append(f"offset {offset}: no check of {event.key} was due")
                else:
                    again = decision_event(due, event.evidence.inputs)
                    replayed += 1
                    if again.model_dump(mode="json") != event.model_dump(mode="json"):
                        differences.append(
                            f"offset {offset}: {event.key} check {event.check_index} was "
                            f"{event.decision}, replays as {again.decision}"
                        )
        state.apply(offset, event)
    return replayed, differences


def _check_at(state: ControlState, event: RolloutDecided) -> DueCheck | None:
    for due in due_checks(state, event.evidence.inputs.as_of):
        if (due.tenant_id, due.key) == (event.tenant_id, event.key):
            # Read at its decision's offset: the same view as at its ``read_offset``,
            # since the rollout did not change in between (else the decision is void).
            return dataclasses.replace(due, read_offset=event.read_offset)
    return None
