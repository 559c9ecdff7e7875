"""Webhook calls: signed, retried on 5xx with backoff, refused calls not retried, every
failure counted and kept (visible at the controller's /v1/webhooks)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.controller.checks import Controller
from services.controller.deliveries import DeliveryLog
from services.controller.webhooks import WebhookCall, WebhookSender
from services.webhook_policy import WebhookPolicy
from services.webhook_signing import SIGNATURE_HEADER, tenant_secret, verify

#: The tests' receiver, "hooks", allowed by name (it resolves nowhere).
HOOKS = WebhookPolicy.parse("hooks")


def wait_for(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_call_is_signed_and_retried_until_it_is_taken() -> None:
    answers = iter([503, 502, 204])
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    sender = WebhookSender(httpx.MockTransport(handle), HOOKS).start()
    secret = tenant_secret("operator", "acme")
    try:
        sender.submit(
            WebhookCall("acme", "http://hooks/x", "id-1", b'{"decision":"rollback"}', secret)
        )
        assert wait_for(lambda: sender.delivered == 1)
    finally:
        sender.stop()
    assert len(seen) == 3 and sender.failed == 0
    last = seen[-1]
    assert last.headers["X-Liftstream-Event-Id"] == "id-1"
    assert verify(secret, last.content, last.headers[SIGNATURE_HEADER])
    assert not verify(
        tenant_secret("operator", "other"), last.content, last.headers[SIGNATURE_HEADER]
    )


def test_a_refused_call_is_not_retried_and_its_failure_is_kept() -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, text="no such hook")

    sender = WebhookSender(httpx.MockTransport(handle), HOOKS).start()
    try:
        sender.submit(WebhookCall("acme", "http://hooks/x", "id-2", b"{}", None))
        assert wait_for(lambda: sender.failed == 1)
    finally:
        sender.stop()
    assert len(calls) == 1
    (failure,) = sender.failures
    assert (failure.url, failure.event_id, failure.error, failure.attempts) == (
        "http://hooks/x",
        "id-2",
        "HTTP 400",
        1,
    )


# At-least-once across restarts: which decisions read at start-up are sent again.


class _Follower:
    def __init__(self, caught_up: bool) -> None:
        self.caught_up = caught_up

    def wait_until_caught_up(self, _timeout: float) -> bool:
        return self.caught_up


class _Sender:
    def __init__(self) -> None:
        self.calls: list[WebhookCall] = []

    def submit(self, call: WebhookCall) -> None:
        self.calls.append(call)


def _decided(tmp_path: Path) -> tuple[Any, Any, int]:
    from schemas.rollout import CheckInputs
    from services.controller.checks import decision_event, due_checks
    from tests.unit.test_rollout_projection import T0, applied

    log = applied(webhooks=[{"url": "http://hooks/a"}, {"url": "http://hooks/b"}])
    (due,) = due_checks(log.state, T0 + timedelta(seconds=10))
    event = decision_event(due, CheckInputs(as_of=T0 + timedelta(seconds=10)))
    log.add(event)
    return log.state, event, log.events[-1][0]


def _controller(caught_up: bool, deliveries: DeliveryLog, now: datetime) -> Controller:
    return Controller(
        _Follower(caught_up),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda event: 0,
        _Sender(),  # type: ignore[arg-type]
        "operator",
        clock=lambda: now,
        deliveries=deliveries,
        resend_s=3600,
    )


def test_calls_not_settled_before_a_restart_are_sent_again(tmp_path: Path) -> None:
    state, event, offset = _decided(tmp_path)
    soon = event.occurred_at + timedelta(minutes=5)
    first = DeliveryLog(tmp_path)
    assert first.fresh
    # A new delivery log knows nothing of the past: nothing read at start-up is re-sent.
    fresh = _controller(False, first, soon)
    fresh.on_applied(offset, event, state)
    assert fresh.webhooks.calls == []  # type: ignore[attr-defined]
    first.record(str(event.event_id), "http://hooks/a", "delivered")
    first.close()
    # After a restart: the call to b was never settled, so it is sent again (to b only).
    again = DeliveryLog(tmp_path)
    assert not again.fresh and again.settled(str(event.event_id), "http://hooks/a")
    restarted = _controller(False, again, soon)
    restarted.on_applied(offset, event, state)
    (call,) = restarted.webhooks.calls  # type: ignore[attr-defined]
    assert (call.url, call.event_id, restarted.resent) == ("http://hooks/b", str(event.event_id), 1)
    assert call.secret == tenant_secret("operator", "acme")
    # Too old to be sent again; while following live, every unsettled call is sent.
    late = _controller(False, again, event.occurred_at + timedelta(hours=2))
    late.on_applied(offset, event, state)
    assert late.webhooks.calls == []  # type: ignore[attr-defined]
    live = _controller(True, again, soon)
    live.on_applied(offset, event, state)
    assert [c.url for c in live.webhooks.calls] == ["http://hooks/b"]  # type: ignore[attr-defined]


def test_the_sender_reports_each_settled_call_and_leaves_pending_ones_at_stop() -> None:
    settled: list[tuple[str, str]] = []
    answers = {"id-ok": 204, "id-no": 400, "id-retry": 503}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers[request.headers["X-Liftstream-Event-Id"]])

    sender = WebhookSender(
        httpx.MockTransport(handle),
        HOOKS,
        on_settled=lambda call, outcome: settled.append((call.event_id, outcome)),
    ).start()
    for event_id in answers:
        sender.submit(WebhookCall("acme", "http://hooks/x", event_id, b"{}", None))
    assert wait_for(lambda: len(settled) == 2 and sender.attempts >= 3)
    sender.stop()  # id-retry is still being retried: pending, not settled
    assert sorted(settled) == [("id-no", "failed"), ("id-ok", "delivered")]


def test_the_delivery_log_forgets_calls_settled_long_ago(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path, keep_s=60)
    log.record("old", "http://hooks/x", "delivered")
    log.record("new", "http://hooks/x", "failed")
    log._db.execute("UPDATE settled SET at = at - 120 WHERE event_id = 'old'")
    assert log.prune() == 1
    assert not log.settled("old", "http://hooks/x") and log.settled("new", "http://hooks/x")
