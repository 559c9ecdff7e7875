"""The dashboard's own rules, with the results and control services faked at the HTTP
layer (``httpx.MockTransport``): sessions, CSRF, roles, escaping, headers, the rows' data.
The browser tests (``tests/browser``) check the same against a real platform."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.dashboard import views
from services.dashboard.app import create_app
from services.dashboard.platform_api import PlatformApi
from services.dashboard.sessions import COOKIE_NAME, SessionStore

ADMIN = "lsk_admin_secret"
READER = "lsk_read_secret"
KEYS = {ADMIN: ("k-admin", "admin"), READER: ("k-read", "read")}
HOSTILE = "<script>alert(1)</script>"


def _comparison(metric: str, verdict: str = "better") -> dict[str, Any]:
    effect = {"estimate": 0.05, "ci_low": 0.01, "ci_high": 0.09}
    return {
        "metric": metric,
        "role": "primary",
        "direction": "increase",
        "verdict": verdict,
        "control": {"variant_key": "control", "units": 100, "mean": 0.1},
        "treatment": {"variant_key": "treatment", "units": 101, "mean": 0.105},
        "relative_effect": effect,
        "absolute_effect": {"estimate": 0.005, "ci_low": 0.001, "ci_high": 0.009},
        "p_value": 0.012,
        "adjusted_p_value": 0.024,
        "sequential": {"p_value": 0.2},
        "bayesian": {"chance_to_beat_control": 0.97},
        "reason": None,
        "reason_code": None,
    }


SCORECARD = {
    "experiment_version": 1,
    "status": "running",
    "control_variant": "control",
    "confidence_level": 0.95,
    "total_units": 201,
    "sample_ratio": {"p_value": 0.9, "threshold": 0.001, "srm_detected": False},
    "trustworthy": True,
    "warnings": [],
    "metrics": [_comparison("conversion")],
    "correction": "holm",
    "scale": "relative",
    "planned_units": 1000,
    "planned_units_source": "plan",
    "planned_units_basis": "basis",
    "errors": [],
}
EXPERIMENT = {
    "key": "exp",
    "name": HOSTILE,
    "hypothesis": "",
    "owner": "",
    "version": 1,
    "status": "running",
    "traffic": 100.0,
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "conversion", "event": "buy", "type": "conversion", "role": "primary"}],
}
STATE = {"key": "exp", "killed": False, "experiment": EXPERIMENT}
FLAG = {
    "key": "f",
    "killed": False,
    "versions": [1],
    "flag": {"key": "f", "ramp": 10.0, "on_value": True, "off_value": False, "version": 1},
}


class FakeServices:
    """The two services' answers, with the key checks they make (tenant ``acme``)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        if key not in KEYS:
            return httpx.Response(401, json={"detail": "unknown API key"})
        key_id, role = KEYS[key]
        path = request.url.path
        if path == "/v1/whoami":
            return httpx.Response(200, json={"key_id": key_id, "tenant_id": "acme", "role": role})
        if not path.startswith("/v1/tenants/acme/"):
            return httpx.Response(403, json={"detail": "another tenant"})
        if request.method == "POST":
            if role != "admin":
                return httpx.Response(403, json={"detail": "needs admin"})
            self.posts.append((path, json.loads(request.content)))
            return httpx.Response(200, json={"changed": True})
        answers: dict[str, Any] = {
            "/v1/tenants/acme/experiments": [
                {"key": "exp", "killed": False, "experiment": EXPERIMENT}
            ],
            "/v1/tenants/acme/experiments/exp": {
                "key": "exp",
                "killed": False,
                "experiment": EXPERIMENT,
            },
            "/v1/tenants/acme/experiments/exp/results": SCORECARD,
            "/v1/tenants/acme/experiments/exp/history": [],
            "/v1/tenants/acme/flags": [FLAG],
            "/v1/tenants/acme/flags/f": FLAG,
            "/v1/tenants/acme/flags/f/history": [],
        }
        if path not in answers:
            return httpx.Response(404, json={"detail": f"no {path}"})
        return httpx.Response(200, json=answers[path])


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(services: FakeServices) -> TestClient:
    api = PlatformApi("http://results", "http://control", transport=httpx.MockTransport(services))
    return TestClient(create_app(api), base_url="http://dash", follow_redirects=False)


def _sign_in(client: TestClient, key: str) -> str:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post("/login", data={"api_key": key, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    page = client.get("/flags")
    session_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert session_token is not None
    return session_token.group(1)


def test_pages_need_a_session_and_the_cookie_is_httponly_strict(client: TestClient) -> None:
    assert client.get("/experiments").headers["location"] == "/login"
    _sign_in(client, ADMIN)
    cookie = (
        next(
            header
            for name, header in client.cookies.jar.__dict__.items()
            if False  # the jar does not keep attributes; read the header instead
        )
        if False
        else None
    )
    assert cookie is None
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post("/login", data={"api_key": ADMIN, "csrf_token": token.group(1)})
    set_cookie = answer.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert ADMIN not in set_cookie
    page = client.get("/experiments")
    assert page.status_code == 200
    assert ADMIN not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_sign_in_needs_its_form_token_and_a_known_key(client: TestClient) -> None:
    client.get("/login")
    assert client.post("/login", data={"api_key": ADMIN, "csrf_token": "forged"}).status_code == 403
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    refused = client.post("/login", data={"api_key": "lsk_nope", "csrf_token": token.group(1)})
    assert refused.status_code == 401 and "unknown or revoked" in refused.text
    assert COOKIE_NAME not in client.cookies


def test_a_hostile_experiment_name_is_escaped(client: TestClient) -> None:
    _sign_in(client, ADMIN)
    for path in ("/experiments", "/experiments/exp"):
        page = client.get(path).text
        assert HOSTILE not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_read_key_sees_no_kill_button_and_its_post_is_refused(
    client: TestClient, services: FakeServices
) -> None:
    token = _sign_in(client, READER)
    assert 'data-testid="kill-form"' not in client.get("/flags").text
    answer = client.post("/flags/f/kill", data={"csrf_token": token, "reason": "mine now"})
    assert answer.status_code == 403
    assert services.posts == []


def test_a_change_needs_the_session_token_same_origin_and_a_reason(
    client: TestClient, services: FakeServices
) -> None:
    token = _sign_in(client, ADMIN)
    assert 'data-testid="kill-form"' in client.get("/flags").text
    assert client.post("/flags/f/kill", data={"reason": "r"}).status_code == 403
    cross = client.post(
        "/flags/f/kill",
        data={"csrf_token": token, "reason": "r"},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert client.post("/flags/f/kill", data={"csrf_token": token}).status_code == 422
    assert services.posts == []
    done = client.post("/flags/f/kill", data={"csrf_token": token, "reason": "errors"})
    assert done.status_code == 303 and done.headers["location"] == "/flags/f"
    assert services.posts == [
        ("/v1/tenants/acme/flags/f/kill", {"killed": True, "reason": "errors"})
    ]


def test_sign_out_ends_the_session_on_the_server(client: TestClient) -> None:
    token = _sign_in(client, ADMIN)
    cookie = client.cookies[COOKIE_NAME]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    client.cookies.set(COOKIE_NAME, cookie)  # a copy kept by an attacker is worthless
    assert client.get("/experiments").headers["location"] == "/login"


def test_rows_carry_the_api_figures_and_srm_blocks_shipping() -> None:
    (row,) = views.metric_rows(SCORECARD)
    assert row.effect == SCORECARD["metrics"][0]["relative_effect"]
    assert (row.p_value, row.sequential_p_value, row.chance_to_win) == (0.012, 0.2, 0.97)
    assert row.bar is not None
    assert row.bar.low_x < row.bar.estimate_x < row.bar.high_x
    assert row.bar.zero_x < row.bar.low_x  # the interval excludes 0: all of it right of 0
    assert (row.icon, row.verdict_text) == ("▲", "better")
    broken = {
        **SCORECARD,
        "sample_ratio": {"p_value": 1e-6, "threshold": 0.001, "srm_detected": True},
    }
    assert views.ship_blocked(broken) and not views.ship_blocked(SCORECARD)
    assert views.banners(broken)[0].title.startswith("Sample ratio mismatch")


def test_sessions_expire_when_idle_or_old_and_the_oldest_goes_first() -> None:
    now = [0.0]
    store = SessionStore(idle_s=10, max_age_s=25, max_sessions=2, clock=lambda: now[0])
    first = store.create("k1", "id1", "acme", "read")
    now[0] = 9
    assert store.get(first.session_id) is first
    now[0] = 18
    assert store.get(first.session_id) is first  # seen at 9: not idle for 10 s
    now[0] = 26
    assert store.get(first.session_id) is None  # older than 25 s
    a, b, c = (store.create(f"k{i}", f"id{i}", "acme", "read") for i in range(3))
    assert store.get(a.session_id) is None and store.get(c.session_id) is c
    assert len(store) == 2 and store.get(b.session_id) is b


EVIDENCE = {
    "step_index": 0,
    "percent": 5.0,
    "step_started_at": "2026-12-03T10:00:00Z",
    "seconds_on_step": 600.0,
    "units_control": 900,
    "units_treatment": 100,
    "guardrails": [
        {
            "metric": "errors",
            "role": "guardrail",
            "dry_run": False,
            "direction": "decrease",
            "scale": "relative",
            "n_control": 900,
            "n_treatment": 100,
            "control_mean": 0.01,
            "treatment_mean": 0.05,
            "effect": 4.0,
            "interval": [1.5, 6.5],
            "p_value": 0.0004,
            "alpha": 0.025,
            "threshold": 0.1,
            "verdict": "fail",
        }
    ],
    "health": [{"gate": "srm", "ok": True, "value": 0.4, "limit": 0.001, "detail": "p 0.4"}],
    "reasons": ["errors got worse beyond its tolerance"],
}
ROLLOUT = {
    "key": "new-search",
    "status": "rolled_back",
    "step": 1,
    "percent": 0.0,
    "checks": 2,
    "automatic_rollbacks": 1,
    "approved_steps": [],
    "plan": {
        "key": "new-search",
        "version": 1,
        "target": {"experiment": "exp", "variant": "treatment", "segment": None},
        "steps": [{"percent": 5.0}, {"percent": 50.0, "approval": True}],
        "guardrails": [{"metric": "errors", "direction": "decrease"}],
        "check_interval_s": 60.0,
        "alpha": 0.05,
    },
    "changes": [
        {
            "offset": 3,
            "type": "rollout_defined",
            "author": "k-admin",
            "reason": "go",
            "occurred_at": "2026-12-03T10:00:00Z",
            "plan_version": 1,
            "step": None,
        },
    ],
}
DECISIONS = [
    {
        "offset": 9,
        "event_id": "00000000-0000-0000-0000-000000000009",
        "author": "controller",
        "occurred_at": "2026-12-03T10:10:00Z",
        "plan_version": 1,
        "check_index": 1,
        "decision": "rollback",
        "step": 1,
        "percent": 0.0,
        "notify": True,
        "reason": "guardrail errors failed",
        "evidence": EVIDENCE,
    },
    {
        "offset": 5,
        "event_id": "00000000-0000-0000-0000-000000000005",
        "author": "controller",
        "occurred_at": "2026-12-03T10:05:00Z",
        "plan_version": 1,
        "check_index": 0,
        "decision": "hold",
        "step": 1,
        "percent": 5.0,
        "notify": False,
        "reason": "too few units",
        "evidence": {**EVIDENCE, "guardrails": []},
    },
]


class FakeRolloutServices(FakeServices):
    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/tenants/acme/rollouts/new-search":
            return httpx.Response(200, json=ROLLOUT)
        if request.method == "GET" and path == "/v1/tenants/acme/rollouts/new-search/decisions":
            return httpx.Response(200, json=list(reversed(DECISIONS)))
        return super().__call__(request)


@pytest.fixture
def rollout_client() -> tuple[TestClient, FakeRolloutServices]:
    services = FakeRolloutServices()
    api = PlatformApi("http://results", "http://control", transport=httpx.MockTransport(services))
    return TestClient(create_app(api), base_url="http://dash", follow_redirects=False), services


def test_the_rollout_timeline_shows_each_decision_with_its_evidence_newest_first(
    rollout_client: tuple[TestClient, FakeRolloutServices],
) -> None:
    client, _ = rollout_client
    _sign_in(client, READER)
    page = client.get("/rollouts/new-search").text
    rollback, hold, defined = (
        page.index('data-decision="rollback"'),
        page.index('data-decision="hold"'),
        page.index("rollout_defined"),
    )
    assert rollback < hold < defined  # newest first, in the control topic's order
    assert "guardrail errors failed" in page and "✖ fail" in page
    assert "[1.5, 6.5]" in page  # the always-valid interval the controller saw
    assert 'href="/experiments/exp"' in page  # the data it was made on
    assert 'data-testid="rollout-approve"' not in page  # a read key has no buttons


def test_a_flag_rollout_links_to_its_flag(
    rollout_client: tuple[TestClient, FakeRolloutServices], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = rollout_client
    flag_plan = {**ROLLOUT["plan"], "target": {"flag": "new-search", "segment": None}}  # type: ignore[dict-item]
    monkeypatch.setitem(ROLLOUT, "plan", flag_plan)
    _sign_in(client, READER)
    page = client.get("/rollouts/new-search").text
    assert 'href="/flags/new-search"' in page and "held back" in page
    assert "/experiments/" not in page


def test_a_gated_rollout_says_it_waits_for_its_shadow_test_with_the_gates_evidence(
    rollout_client: tuple[TestClient, FakeRolloutServices], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = rollout_client
    gate = {"shadow": "pricing-v2", "max_mismatch_beyond_noise": 0.01, "confidence": 0.95}
    monkeypatch.setitem(ROLLOUT, "plan", {**ROLLOUT["plan"], "entry_gate": gate})  # type: ignore[dict-item]
    monkeypatch.setitem(ROLLOUT, "entered", False)
    answer = {
        **gate,
        "available": True,
        "allowed": False,
        "estimate": 0.05,
        "low": 0.04,
        "upper": 0.06,
        "candidate_runs": 1000,
        "secondary_runs": 1000,
        "detail": "not below 0.01",
    }
    held = {**DECISIONS[1], "evidence": {**DECISIONS[1]["evidence"], "entry_gate": answer}}  # type: ignore[dict-item]
    monkeypatch.setattr(sys.modules[__name__], "DECISIONS", [DECISIONS[0], held])
    _sign_in(client, READER)
    page = client.get("/rollouts/new-search").text
    assert 'data-testid="entry-gate"' in page and 'href="/shadows/pricing-v2"' in page
    assert "<strong>waiting</strong>, nobody is served the candidate" in page
    assert "Shadow test pricing-v2: not allowed" in page and "[0.04, 0.06]" in page
    monkeypatch.setitem(ROLLOUT, "entered", True)
    assert "passed." in client.get("/rollouts/new-search").text


def test_rollout_commands_need_admin_and_a_reason(
    rollout_client: tuple[TestClient, FakeRolloutServices],
) -> None:
    client, services = rollout_client
    approve = "/rollouts/new-search/approve"
    token = _sign_in(client, READER)
    assert client.post(approve, data={"csrf_token": token, "reason": "ok"}).status_code == 403
    client.cookies.clear()
    token = _sign_in(client, ADMIN)
    assert 'data-testid="rollout-approve"' in client.get("/rollouts/new-search").text
    assert client.post(approve, data={"csrf_token": token}).status_code == 422
    unknown = client.post("/rollouts/new-search/delete", data={"csrf_token": token, "reason": "x"})
    assert unknown.status_code == 404
    done = client.post(approve, data={"csrf_token": token, "reason": "ok"})
    assert done.status_code == 303
    assert services.posts == [("/v1/tenants/acme/rollouts/new-search/approve", {"reason": "ok"})]


def _rate(count: int, n: int) -> dict[str, Any]:
    return {"count": count, "n": n, "rate": count / n, "low": 0.0, "high": 0.1, "reason": None}


SHADOW = {
    "tenant_id": "acme",
    "shadow": "pricing-v2",
    "since": None,
    "observations": 2000,
    "malformed": 0,
    "confidence": 0.95,
    "mismatch": _rate(60, 1500),
    "noise": _rate(3, 500),
    "beyond_noise": {"estimate": 0.034, "low": 0.02, "high": 0.05, "confidence": 0.95},
    "primary_errors": _rate(0, 2000),
    "candidate_errors": _rate(2, 1500),
    "candidate_timeouts": _rate(1, 1500),
    "latency": [
        {
            "quantile": 0.5,
            "pairs": 1400,
            "primary_ms": 2.0,
            "other_ms": 3.0,
            "ratio": 1.5,
            "low": 1.4,
            "high": 1.6,
            "reason": None,
        },
    ],
    "noise_latency": [],
}


def test_the_shadow_page_shows_mismatch_beyond_noise_and_latency(
    services: FakeServices,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/tenants/acme/shadows/pricing-v2":
            return httpx.Response(200, json=SHADOW)
        return services(request)

    api = PlatformApi("http://results", "http://control", transport=httpx.MockTransport(answer))
    client = TestClient(create_app(api), base_url="http://dash", follow_redirects=False)
    _sign_in(client, READER)
    assert client.get("/shadows?name=pricing-v2").headers["location"] == "/shadows/pricing-v2"
    page = client.get("/shadows/pricing-v2").text
    assert "✖ Mismatch beyond noise" in page and "+3.40% [+2.00%, +5.00%]" in page
    assert "p50" in page and "1.5" in page
    assert client.get("/shadows/unknown-one").status_code == 404
