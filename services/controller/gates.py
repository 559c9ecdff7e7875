"""A rollout's shadow entry gate, asked of the results service over HTTP.

``ShadowGates.read(tenant, gate)`` calls ``GET {results}/v1/tenants/{tenant}/shadows/
{name}/gate`` with the operator's service token (``LIFTSTREAM_SERVICE_TOKEN``: the
controller holds no tenant's key) and returns what it said as a ``ShadowGateInput``, the
check's input that ``decide`` judges and the decision event keeps (so replay needs no
results service). A shadow test with no observation yet (404) is an answer: not allowed.
Anything else that is not an answer (no URL or token configured, the service down or
slow, a 5xx, a refused token, a body that does not parse) is ``available=False``: the
rollout holds with "gate unavailable", it never advances on no answer.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import ValidationError

from schemas.limits import MAX_TEXT_CHARS, clip
from schemas.rollout import ShadowEntryGate, ShadowGateInput
from schemas.shadow import ShadowGate
from services.settings import SERVICE_TOKEN_ENV

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


class ShadowGates:
    def __init__(
        self,
        results_url: str,
        token: str | None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.results_url = results_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def read(self, tenant_id: str, gate: ShadowEntryGate) -> ShadowGateInput:
        asked = {
            "shadow": gate.shadow,
            "max_mismatch_beyond_noise": gate.max_mismatch_beyond_noise,
            "confidence": gate.confidence,
        }

        def unavailable(detail: str) -> ShadowGateInput:
            log.warning("shadow gate %s/%s unavailable: %s", tenant_id, gate.shadow, detail)
            return ShadowGateInput(available=False, detail=clip(detail, MAX_TEXT_CHARS), **asked)

        if not self.results_url:
            return unavailable(
                "the controller has no results service URL (LIFTSTREAM_CONTROLLER_RESULTS_URL)"
            )
        if not self.token:
            return unavailable(f"the controller has no service token ({SERVICE_TOKEN_ENV})")
        url = f"{self.results_url}/v1/tenants/{tenant_id}/shadows/{gate.shadow}/gate"
        try:
            answer = self._http.get(
                url,
                params={
                    "max_beyond_noise": gate.max_mismatch_beyond_noise,
                    "confidence": gate.confidence,
                },
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as error:
            return unavailable(f"the results service did not answer: {type(error).__name__}")
        if answer.status_code == 404:
            return ShadowGateInput(
                available=True,
                allowed=False,
                detail=clip(f"no observation of shadow test '{gate.shadow}' yet", MAX_TEXT_CHARS),
                **asked,
            )
        if not answer.is_success:
            return unavailable(f"the results service answered HTTP {answer.status_code}")
        try:
            said = ShadowGate.model_validate_json(answer.content)
            return ShadowGateInput(
                available=True,
                allowed=said.allowed,
                estimate=said.estimate,
                low=said.low,
                upper=said.upper,
                candidate_runs=said.candidate_runs,
                candidate_mismatches=said.candidate_mismatches,
                secondary_runs=said.secondary_runs,
                secondary_mismatches=said.secondary_mismatches,
                detail=clip(said.reason, MAX_TEXT_CHARS),
                **asked,
            )
        except ValidationError:
            return unavailable("the results service's answer did not parse as a gate")
