"""The webhook URL policy (SSRF): internal addresses and other schemes refused when a plan
is applied (422 naming the field) and again at send time after resolving the host (DNS
rebinding), unless the operator allows them; the call goes to the address checked."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from services.controller.webhooks import WebhookCall, WebhookSender
from services.settings import ServiceSettings, load
from services.webhook_policy import WebhookPolicy, WebhookRefused
from tests.unit.test_rollout_api import PLAN, api, put_plan  # noqa: F401 (the fixture)


def resolving(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, _port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


PUBLIC = "93.184.216.34"
NAMES = {
    "hooks.example.com": [PUBLIC],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": [PUBLIC, "10.0.0.7"],
    "six.example.com": ["fd00::1"],
}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("http://10.1.2.3/x", "private"),
        ("http://192.168.0.10/x", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://metadata.example.com/x", "resolves to 169.254.169.254"),
        ("http://mixed.example.com/x", "resolves to 10.0.0.7"),
        ("http://six.example.com/x", "private"),
        ("http://224.0.0.5/x", "multicast"),
        ("http://240.0.0.1/x", "reserved"),
        ("http://0.0.0.0/x", "unspecified"),
        ("http://100.64.0.1/x", "not global"),
        ("ftp://hooks.example.com/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://nowhere.example.com/x", "does not resolve"),
    ],
)
def test_internal_addresses_and_other_schemes_are_refused(url: str, why: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        WebhookPolicy(resolver=resolving(NAMES)).check(url)
    assert why in str(refused.value)


def test_public_addresses_pass_and_the_operator_can_allow_internal_ones() -> None:
    default = WebhookPolicy(resolver=resolving(NAMES))
    target = default.check("https://hooks.example.com:8443/x")
    assert (target.host, target.port, target.address) == ("hooks.example.com", 8443, PUBLIC)
    allowing = WebhookPolicy.parse("10.0.0.0/8, 127.0.0.1, Metadata.Example.com", NAMES.get)  # type: ignore[arg-type]
    assert allowing.check("http://10.1.2.3/x").address == "10.1.2.3"
    assert allowing.check("http://127.0.0.1:9/x").address == "127.0.0.1"
    assert allowing.check("http://metadata.example.com/x").address is None  # allowed by name
    with pytest.raises(WebhookRefused):
        allowing.check("http://127.0.0.2/x")


def test_a_malformed_allow_list_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match=r"LIFTSTREAM_WEBHOOK_ALLOW_HOSTS=.*'hooks internal'"):
        load(ServiceSettings, {"LIFTSTREAM_WEBHOOK_ALLOW_HOSTS": "10.0.0.0/8,hooks internal"})


def test_applying_a_plan_with_an_internal_webhook_is_a_422_naming_the_field(
    api: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, client, headers = api
    hooks = [{"url": "http://93.184.216.34/ok"}, {"url": "http://169.254.169.254/latest"}]
    refused = put_plan(client, headers["admin"], {**PLAN, "webhooks": hooks})
    assert refused.status_code == 422
    (problem,) = refused.json()["errors"]
    assert problem["field"] == "webhooks.1.url" and "link-local" in problem["reason"]
    monkeypatch.setenv("LIFTSTREAM_WEBHOOK_ALLOW_HOSTS", "169.254.169.254/32")
    assert put_plan(client, headers["admin"], {**PLAN, "webhooks": hooks}).status_code == 200


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_host_rebound_to_an_internal_address_is_refused_at_send_time() -> None:
    """Public when the plan was applied, loopback when the call is made: not called."""
    names = {"hooks.example.com": [PUBLIC]}
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    policy = WebhookPolicy(resolver=lambda host, port: names[host])
    sender = WebhookSender(httpx.MockTransport(handle), policy).start()
    try:
        sender.submit(WebhookCall("acme", "https://hooks.example.com/h", "id-1", b"{}", None))
        assert wait_for(lambda: sender.delivered == 1)
        names["hooks.example.com"] = ["127.0.0.1"]  # rebound
        sender.submit(WebhookCall("acme", "https://hooks.example.com/h", "id-2", b"{}", None))
        assert wait_for(lambda: sender.failed == 1)
    finally:
        sender.stop()
    # The first call went to the address checked, with the name as Host and TLS SNI.
    (call,) = seen
    assert call.url.host == PUBLIC and call.headers["host"] == "hooks.example.com"
    assert call.extensions["sni_hostname"] == "hooks.example.com"
    (failure,) = sender.failures
    assert failure.event_id == "id-2" and failure.attempts == 1
    assert "refused by the webhook URL policy" in failure.error and "loopback" in failure.error
