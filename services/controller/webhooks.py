"""Webhook calls on every rollout decision: signed, retried with backoff, failures kept.

``WebhookSender.submit`` queues one call (bounded: the oldest queued is dropped and
counted when full); a thread POSTs it as JSON with ``X-Liftstream-Signature``
(``services.webhook_signing``) and ``X-Liftstream-Event-Id`` (the decision's id, stable
across retries, for the receiver to de-duplicate), and retries connection errors, 429
and 5xx after 0.5, 1, 2, 4 and 8 s (``Retry-After`` when given, at most 30 s). A call that
still fails is counted and kept in ``failures`` (the newest 100), which the controller
serves at ``/v1/webhooks``, and logged.

Before every attempt the URL is checked by the SSRF policy (``services.webhook_policy``)
after resolving its host, and the call connects to the address checked (the host name in
``Host`` and TLS SNI), so a name rebound to an internal address since the plan was
applied is refused, not called: counted as failed, never retried.

``on_settled`` hears of each call delivered or given up on: the controller records it
(``services.controller.deliveries``) so that after a restart it sends again only the calls
that were still pending.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from services.webhook_policy import Target, WebhookPolicy, WebhookRefused
from services.webhook_signing import SIGNATURE_HEADER, signature

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_QUEUED = 10_000
MAX_FAILURES_KEPT = 100
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WebhookCall:
    tenant_id: str
    url: str
    event_id: str
    body: bytes
    secret: str | None


@dataclass(frozen=True)
class WebhookFailure:
    tenant_id: str
    url: str
    event_id: str
    attempts: int
    error: str
    failed_at: str


def _pinned(target: Target) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL, headers, extensions) of a call to ``target``'s checked address."""
    if target.address is None:
        return target.url, {}, {}
    url = httpx.URL(target.url)
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = {"http": 80, "https": 443}[url.scheme]
    headers = {"Host": host if target.port == default else f"{host}:{target.port}"}
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    return str(url.copy_with(host=target.address)), headers, extensions


class WebhookSender:
    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        policy: WebhookPolicy | None = None,
        on_settled: Callable[[WebhookCall, str], None] | None = None,
    ) -> None:
        """``on_settled(call, outcome)``: called once a call is delivered or given up on
        ("delivered", "failed"), never for a call still queued or retried."""
        self._queue: queue.Queue[WebhookCall] = queue.Queue(MAX_QUEUED)
        # trust_env=False: a proxy from the environment would connect to the name, not
        # to the address the policy checked.
        self._http = httpx.Client(timeout=TIMEOUT_S, transport=transport, trust_env=False)
        self.policy = policy or WebhookPolicy()
        self._on_settled = on_settled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self.delivered = 0
        self.failed = 0
        self.attempts = 0
        self.dropped = 0
        self.failures: deque[WebhookFailure] = deque(maxlen=MAX_FAILURES_KEPT)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._http.close()

    def submit(self, call: WebhookCall) -> None:
        while True:
            try:
                self._queue.put_nowait(call)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                call = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._deliver(call)

    def _settle(self, call: WebhookCall, outcome: str) -> None:
        if self._on_settled is not None:
            try:
                self._on_settled(call, outcome)
            except Exception:  # the call is made; failing to note it means a re-send
                log.exception("could not record the webhook call %s", call.event_id)

    def _deliver(self, call: WebhookCall) -> None:
        error = ""
        for attempt in range(len(BACKOFF_S) + 1):
            headers = {"Content-Type": "application/json", "X-Liftstream-Event-Id": call.event_id}
            if call.secret is not None:
                headers[SIGNATURE_HEADER] = signature(call.secret, call.body, int(time.time()))
            self.attempts += 1
            wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            try:
                url, pinned, extensions = _pinned(self.policy.check(call.url))
            except WebhookRefused as refused:
                error = f"refused by the webhook URL policy: {refused}"
                break
            try:
                answer = self._http.post(
                    url, content=call.body, headers={**headers, **pinned}, extensions=extensions
                )
                if answer.is_success:
                    self.delivered += 1
                    self._settle(call, "delivered")
                    return
                error = f"HTTP {answer.status_code}"
                if answer.status_code != 429 and answer.status_code < 500:
                    break  # the receiver refuses it: retrying would not help
                retry_after = answer.headers.get("retry-after", "")
                if retry_after.isdigit():
                    wait = min(30.0, float(retry_after))
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
            if attempt == len(BACKOFF_S):
                break
            if self._stop.wait(wait):  # stopping: left pending, sent again after a restart
                return
        self.failed += 1
        self._settle(call, "failed")
        self.failures.append(
            WebhookFailure(
                tenant_id=call.tenant_id,
                url=call.url,
                event_id=call.event_id,
                attempts=attempt + 1,
                error=error[:500],
                failed_at=datetime.now(UTC).isoformat(),
            )
        )
        log.warning(
            "webhook %s for %s failed after %d attempts: %s",
            call.url,
            call.event_id,
            attempt + 1,
            error,
        )
