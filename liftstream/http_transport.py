"""Events to the HTTP collector from a background thread: batches, retries, a bounded queue.

``send`` serialises the event and appends it to an in-memory queue; it never waits for
the network. When the queue is full the OLDEST queued event is dropped and counted
(``stats.dropped``): during a long collector outage memory stays bounded, the caller's
latency is untouched, and the newest data survives.

One daemon thread takes up to ``max_batch_events`` events (and ``max_batch_bytes`` of
JSON) once that many are queued or the first has waited ``linger_s``, POSTs
``{"events": [...]}`` to ``<collector_url>/v1/events`` with ``Authorization: Bearer``,
and waits for the answer before taking the next batch, so events arrive in the order
they were sent (the stream relies on a unit's exposure preceding its outcomes).

- **202 / 207 / 422** are final: the collector's ``accepted`` and ``rejected`` counts are
  added to ``stats``; each per-event error is logged.
- **429, 5xx, connection errors and timeouts** are retried with the same bytes (same
  ``event_id`` s) after ``Retry-After`` if the answer has one, else after exponential
  backoff with full jitter, until a final answer or ``close``. A retry after a timeout may
  store an event twice in Kafka; both copies carry the same ``event_id`` and everything
  downstream de-duplicates by it.
- **Other 4xx** (400, 401, 403, 413...) are not retried: the batch is logged and counted
  as rejected.

``flush`` waits until the queue is drained; ``close`` flushes (at most ``close_timeout_s``
by default), stops the thread, and counts what is left as dropped. A transport not closed
is closed at interpreter exit. Invariant: ``sent == accepted + rejected + dropped + pending``.
"""

from __future__ import annotations

import atexit
import logging
import random as random_module
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
from liftstream.events import SdkEvent
from liftstream.retry import backoff_delay, retry_after_s
from schemas.errors import FieldError

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
_FINAL_WITH_VERDICT = {202, 207, 422}
_LOGGED_EVENT_ERRORS = 5  # per batch; the rest are summed up in one line


@dataclass(frozen=True)
class TransportStats:
    """Event counts since the transport started (one consistent snapshot)."""

    sent: int  #: handed to ``send``
    accepted: int  #: stored by the collector
    rejected: int  #: refused by the collector (per-event errors, or a refused request)
    dropped: int  #: pushed out of a full queue, or left unsent at ``close``
    retries: int  #: requests repeated after 429, 5xx or a connection error

    @property
    def pending(self) -> int:
        """Queued or in flight: not yet accepted, rejected or dropped."""
        return self.sent - self.accepted - self.rejected - self.dropped


def _positive(name: str, value: float, minimum: float = 0.0, strict: bool = True) -> None:
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InvalidInputError(
            "invalid HTTP transport", [FieldError(field=name, reason=f"must be {bound}")]
        )


class HttpTransport:
    """Batches events to the collector in the background (see the module docstring)."""

    def __init__(
        self,
        collector_url: str,
        api_key: str,
        *,
        max_batch_events: int = 500,
        max_batch_bytes: int = 1_000_000,
        linger_s: float = 0.1,
        max_queue_events: int = 50_000,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        request_timeout_s: float = 30.0,
        close_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], Any] | None = None,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        """``transport`` replaces httpx's (tests); ``sleep`` replaces the wait between
        retries (tests; by default a wait that ``close`` interrupts)."""
        problems = []
        if not collector_url.startswith(("http://", "https://")):
            problems.append(
                FieldError(
                    field="collector_url",
                    reason=f"must be an http:// or https:// URL, got {collector_url!r}",
                )
            )
        if not api_key:
            problems.append(
                FieldError(
                    field="api_key",
                    reason="an API key with the ingest role is needed "
                    "(pass api_key= or set LIFTSTREAM_API_KEY)",
                )
            )
        if problems:
            raise InvalidInputError("invalid HTTP transport", problems)
        _positive("max_batch_events", max_batch_events)
        _positive("max_batch_bytes", max_batch_bytes)
        _positive("linger_s", linger_s, strict=False)
        _positive("max_queue_events", max_queue_events)
        _positive("backoff_base_s", backoff_base_s)
        _positive("backoff_max_s", backoff_max_s)
        _positive("request_timeout_s", request_timeout_s)
        _positive("close_timeout_s", close_timeout_s, strict=False)

        self.url = collector_url.rstrip("/") + EVENTS_PATH
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self.max_queue_events = max_queue_events
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.close_timeout_s = close_timeout_s
        self._random = random
        self._http = httpx.Client(
            timeout=request_timeout_s,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "liftstream-sdk",
            },
        )
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._in_flight = 0
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._stop = threading.Event()  # set by close: abandon retries and exit
        self._sleep: Callable[[float], Any] = sleep or self._stop.wait
        self._sent = self._accepted = self._rejected = self._dropped = self._retries = 0
        self._reported_rejected = self._reported_dropped = 0
        self._first_problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="liftstream-http", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)

    @property
    def stats(self) -> TransportStats:
        with self._cond:
            return TransportStats(
                self._sent, self._accepted, self._rejected, self._dropped, self._retries
            )

    def send(self, event: SdkEvent) -> None:
        """Queue ``event``; drops the oldest queued event if the queue is full."""
        payload = event.to_json()
        with self._cond:
            if self._closing:
                raise PlatformUnavailableError("the HTTP transport is closed")
            self._sent += 1
            if len(self._queue) >= self.max_queue_events:
                self._queue.popleft()
                self._count_dropped(1, f"queue full ({self.max_queue_events} events)")
            self._queue.append(payload)
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch_events:
                self._cond.notify_all()  # wake the thread: a batch to start or to send

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event got a final answer (``timeout`` s; None: no limit).

        Raises ``DeliveryError`` if events are still pending at the timeout (they stay
        queued and are retried), or if any were rejected or dropped since the last flush.
        """
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                drained = self._cond.wait_for(self._drained, timeout)
            finally:
                self._flushing -= 1
        self._raise_if_undelivered(drained, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (at most ``timeout``, default ``close_timeout_s``), then stop the thread.

        Events still unsent then are counted as dropped; raises ``DeliveryError`` as
        ``flush`` does. Safe to call twice.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()
            drained = self._cond.wait_for(
                self._drained, self.close_timeout_s if timeout is None else timeout
            )
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        with self._cond:
            if self._queue:
                self._count_dropped(len(self._queue), "left unsent at close")
                self._queue.clear()
        if not self._thread.is_alive():
            self._http.close()  # else a request is still in flight; the daemon thread ends it
        atexit.unregister(self._close_at_exit)
        self._raise_if_undelivered(drained or self._drained(), timeout)

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except DeliveryError as error:
            log.warning("at exit: %s", error)

    def _drained(self) -> bool:
        return not self._queue and self._in_flight == 0

    def _count_dropped(self, count: int, why: str) -> None:
        self._dropped += count
        if self._first_problem is None:
            self._first_problem = f"dropped: {why}"

    def _raise_if_undelivered(self, drained: bool, timeout: float | None) -> None:
        with self._cond:
            pending = len(self._queue) + self._in_flight
            rejected = self._rejected - self._reported_rejected
            dropped = self._dropped - self._reported_dropped
            problem, self._first_problem = self._first_problem, None
            self._reported_rejected, self._reported_dropped = self._rejected, self._dropped
        if not drained:
            raise DeliveryError(
                f"{pending} event(s) not yet delivered to {self.url} after {timeout} s "
                "(still queued and retried in the background)"
            )
        if rejected or dropped:
            raise DeliveryError(
                f"{rejected} event(s) rejected by the collector at {self.url} and {dropped} "
                f"dropped since the last flush; first problem: {problem}"
            )

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._deliver(batch)
            except Exception as error:  # a bug must not silently stop delivery forever
                log.exception("HTTP transport: unexpected error")
                with self._cond:
                    self._count_dropped(len(batch), f"unexpected error {error!r}")
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _next_batch(self) -> list[bytes] | None:
        """The next batch once it is full, lingered or flushed; None when stopping."""
        with self._cond:
            while not self._queue:
                if self._closing or self._stop.is_set():
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.linger_s
            while (
                len(self._queue) < self.max_batch_events
                and not (self._flushing or self._closing or self._stop.is_set())
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(remaining)
            if self._stop.is_set():
                return None
            batch: list[bytes] = []
            size = len(b'{"events":[]}')
            while self._queue and len(batch) < self.max_batch_events:
                size += len(self._queue[0]) + 1
                if batch and size > self.max_batch_bytes:
                    break
                batch.append(self._queue.popleft())
            self._in_flight = len(batch)
            return batch

    def _deliver(self, batch: list[bytes]) -> None:
        body = b'{"events":[' + b",".join(batch) + b"]}"
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._http.post(self.url, content=body)
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}: {error}"
            else:
                code = response.status_code
                if code != httpx.codes.TOO_MANY_REQUESTS and code < 500:
                    self._settle(len(batch), response)
                    return
                reason = f"HTTP {code}"
                wait = retry_after_s(response.headers.get("Retry-After")) or None
            if self._stop.is_set():
                with self._cond:
                    self._count_dropped(len(batch), f"closed while retrying ({reason})")
                return
            if wait is None:
                wait = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s, self._random)
            log.warning(
                "collector at %s: %s; retrying %d event(s) in %.2f s",
                self.url,
                reason,
                len(batch),
                wait,
            )
            with self._cond:
                self._retries += 1
            self._sleep(wait)
            attempt += 1

    def _settle(self, count: int, response: httpx.Response) -> None:
        """Count a final answer: the collector's verdict, or the whole batch refused."""
        verdict = _verdict(response) if response.status_code in _FINAL_WITH_VERDICT else None
        if verdict is None and response.is_success:
            verdict = (count, 0, [])  # a 2xx without the usual body: taken as accepted
        if verdict is None:
            accepted, rejected = 0, count
            problem = f"HTTP {response.status_code}: {_detail(response)}"
            log.error("collector at %s refused %d event(s): %s", self.url, count, problem)
        else:
            accepted, rejected, errors = verdict
            rejected = min(max(rejected, count - accepted, 0), count)
            accepted = count - rejected
            problem = _describe_errors(errors) or f"{rejected} event(s) refused"
            for error in errors[:_LOGGED_EVENT_ERRORS]:
                log.warning("collector at %s refused an event: %s", self.url, error)
            if len(errors) > _LOGGED_EVENT_ERRORS:
                log.warning("... and %d more event error(s)", len(errors) - _LOGGED_EVENT_ERRORS)
        with self._cond:
            self._accepted += accepted
            self._rejected += rejected
            if rejected and self._first_problem is None:
                self._first_problem = problem


def _verdict(response: httpx.Response) -> tuple[int, int, list[Any]] | None:
    """``(accepted, rejected, errors)`` from a 202/207/422 body, None if it has another shape."""
    try:
        body = response.json()
        errors = body.get("errors") or []
        return int(body["accepted"]), int(body["rejected"]), list(errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _describe_errors(errors: list[Any]) -> str:
    if not errors:
        return ""
    first = errors[0]
    if isinstance(first, dict):
        return f"event {first.get('index')}: {first.get('field')}: {first.get('reason')}"
    return str(first)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail is not None else response.text[:200]
