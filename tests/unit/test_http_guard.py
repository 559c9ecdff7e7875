"""The shared HTTP guard: bodies refused before parsing and before the key check, error
answers without internals, ``/metrics`` for the operator token only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from schemas.limits import MAX_BODY_BYTES
from services.control_domain.api_keys import KeyRecord
from services.http_auth import KeyChecks
from services.http_guard import BodyLimit, ServiceUnavailable, install_error_handlers
from services.operator_metrics import add_metrics_route

ADMIN = KeyRecord("abcdef012345", "acme", "admin", revoked=False, label="")
TOKEN = "operator-secret"


def _app(seen: list[int], registry: CollectorRegistry | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit)
    install_error_handlers(app, "test")
    add_metrics_route(app, registry or CollectorRegistry(), token=TOKEN)
    admin = Depends(KeyChecks(lambda key: ADMIN if key == "good" else None).require("admin"))

    @app.post("/v1/tenants/{tenant}/things")
    async def things(tenant: str, request: Request, caller: KeyRecord = admin) -> dict[str, Any]:
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    @app.get("/broker")
    def broker() -> None:
        raise ServiceUnavailable(
            "the control topic is unavailable; retry",
            "KafkaTimeoutError at 10.1.2.3:9092 (request_timeout_ms=30000)",
        )

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("secret settings: sasl_password=hunter2 bootstrap=10.1.2.3:9092")

    return app


@pytest.fixture
def seen() -> list[int]:
    return []


@pytest.fixture
def client(seen: list[int]) -> Iterator[TestClient]:
    with TestClient(_app(seen), raise_server_exceptions=False) as test_client:
        yield test_client


PATH = "/v1/tenants/acme/things"


@pytest.mark.parametrize("key", [None, "good", "wrong"])
def test_a_body_over_the_limit_is_413_before_the_key_is_checked(
    client: TestClient, seen: list[int], key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = client.post(PATH, content=b"x" * (MAX_BODY_BYTES + 1), headers=headers)
    assert answer.status_code == 413
    assert f"the limit is {MAX_BODY_BYTES} bytes (1 MiB)" in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"] == "body"
    assert seen == []


def test_a_chunked_body_is_counted_as_it_arrives(client: TestClient, seen: list[int]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 64 * 1024  # 2.5 MiB in all, with no Content-Length

    answer = client.post(PATH, content=chunks())
    assert answer.status_code == 413
    assert "over" in answer.json()["detail"] and str(MAX_BODY_BYTES) in answer.json()["detail"]
    assert seen == []


def test_a_body_within_the_limit_reaches_the_route_unchanged(
    client: TestClient, seen: list[int]
) -> None:
    answer = client.post(
        PATH, content=b"z" * MAX_BODY_BYTES, headers={"Authorization": "Bearer good"}
    )
    assert (answer.status_code, answer.json()) == (200, {"bytes": MAX_BODY_BYTES})
    assert client.post(PATH, content=b"{}").status_code == 401  # small: the key check decides
    assert seen == [MAX_BODY_BYTES]


def test_a_content_length_that_is_not_a_number_is_400(client: TestClient) -> None:
    answer = client.post(PATH, content=b"{}", headers={"Content-Length": "lots"})
    assert answer.status_code == 400


def test_errors_say_what_to_do_and_nothing_about_the_platform(client: TestClient) -> None:
    unavailable = client.get("/broker")
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "1"
    assert unavailable.json() == {"detail": "the control topic is unavailable; retry"}
    bug = client.get("/bug")
    assert bug.status_code == 500
    assert "internal error (reference " in bug.json()["detail"]
    for text in ("10.1.2.3", "9092", "hunter2", "sasl", "timeout_ms"):
        assert text not in unavailable.text and text not in bug.text


def test_metrics_answer_only_the_operator_token(seen: list[int]) -> None:
    registry = CollectorRegistry()
    Counter("liftstream_things", "Things.", registry=registry).inc(3)
    with TestClient(_app(seen, registry)) as client:
        for headers in ({}, {"Authorization": "Bearer good"}, {"Authorization": "Bearer nope"}):
            answer = client.get("/metrics", headers=headers)
            assert answer.status_code == 401
            assert "liftstream_things" not in answer.text
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and "liftstream_things_total 3.0" in answer.text


def test_without_an_operator_token_metrics_are_refused_to_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFTSTREAM_METRICS_TOKEN", raising=False)
    app = FastAPI()
    add_metrics_route(app, CollectorRegistry())
    with TestClient(app) as client:
        answer = client.get("/metrics", headers={"Authorization": "Bearer "})
        assert answer.status_code == 401
        assert "LIFTSTREAM_METRICS_TOKEN" in answer.json()["detail"]
