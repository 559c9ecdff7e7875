"""Webhook calls: signed, retried on 5xx with backoff, refused calls not retried, every
failure counted and kept (visible at the controller's /v1/webhooks)."""

from __future__ import annotations

import time

import httpx

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
