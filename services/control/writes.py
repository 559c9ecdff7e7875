"""How the control API makes a change: quota, check, read back, write, answer.

``ControlWriter.write(caller, command)`` admits the caller's tenant against its write
quota (429 with ``Retry-After`` when over, before the shared write lock is taken), runs
``command`` against the projection under the lock, parses the event back as every
follower would (``readback``), writes it to the control topic and returns once it is
applied. ``Written.result`` is the one builder of the answer every change gives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException
from pydantic import ValidationError

from schemas.control import ControlEvent
from schemas.control_api import ChangeResult
from schemas.errors import field_errors
from schemas.limits import CONTROL_WRITE_BURST, CONTROL_WRITES_PER_S
from services.control.backend import ControlBackend
from services.control.lookups import Author, Refused
from services.control.readback import readable_payload
from services.control_domain.api_keys import KeyRecord
from services.quotas import Quota, TenantQuotas

Command = Callable[[Author], ControlEvent | None]
Result = TypeVar("Result", bound=ChangeResult)


@dataclass(frozen=True)
class Written:
    """What a change wrote: the event and its offset, or neither when nothing changed."""

    event: ControlEvent | None
    offset: int | None

    def result(self, answer: type[Result], **state: Any) -> Result:
        """The answer to the change: ``answer`` with what was written and ``state`` (the
        changed experiment, flag or metric as it reads now)."""
        event = self.event
        return answer(
            changed=event is not None,
            type=None if event is None else event.type,
            event_id=None if event is None else event.event_id,
            offset=self.offset,
            **state,
        )


class ControlWriter:
    """Writes changes for one control app; ``clock`` paces the tenants' write quotas."""

    def __init__(self, backend: ControlBackend, clock: Callable[[], float]) -> None:
        self._backend = backend
        self._quotas = TenantQuotas(
            lambda _tenant: Quota(rate_per_s=CONTROL_WRITES_PER_S, burst=CONTROL_WRITE_BURST),
            clock,
        )
        self._quota_lock = threading.Lock()

    def write(self, caller: KeyRecord, command: Command) -> Written:
        author = Author(tenant_id=caller.tenant_id, key_id=caller.key_id)
        self._admit(caller.tenant_id)
        backend = self._backend
        with backend.write_lock:
            with backend.lock:
                try:
                    event = command(author)
                except ValidationError as error:
                    raise Refused(422, "invalid change", field_errors(error.errors())) from None
                if event is None:
                    return Written(None, None)
                payload = readable_payload(event, backend.state)
            return Written(event, backend.publish(event, payload))

    def _admit(self, tenant_id: str) -> None:
        """429 for a tenant over its quota; checked before the shared write lock, so such a
        tenant never holds it."""
        with self._quota_lock:
            admission = self._quotas.admit(tenant_id, 1)
        if not admission.allowed:
            raise HTTPException(
                status_code=429,
                detail=f"tenant '{tenant_id}' is over its quota of "
                f"{CONTROL_WRITES_PER_S:g} changes per second (bursts of "
                f"{CONTROL_WRITE_BURST}); retry in {admission.retry_after_header} s",
                headers={"Retry-After": admission.retry_after_header},
            )
