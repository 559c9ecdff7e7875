"""Two rollout controllers on the real broker: one checks, the other takes over when it
is killed.

Both join the namespace's controller group; only the active one writes decisions (every
check index of the rollout is written once, by one process). SIGKILL the active one: the
other is given the group's partitions after the session timeout, reads the control log
to its end and continues the rollout from the next check index: none repeated, none
lost. The takeover time (kill to the next decision) is printed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstream.settings import load_settings
from schemas.control import RolloutDecided
from schemas.topics import TopicCatalog
from services.control_domain.control_log import decode_control_event
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_rollouts import experiment, namespace_of_its_own
from tests.integration.helpers_services import ServiceProcess
from tests.integration.helpers_stream import read_topic

pytestmark = pytest.mark.integration

TENANT = "acme"
ROLLOUT = "checkout-rollout"


def _role(controller: ServiceProcess) -> str:
    return str(httpx.get(f"{controller.url}/healthz", timeout=5).json().get("role"))


def _decisions(control_topic: str) -> list[RolloutDecided]:
    settings = load_settings()
    events = [decode_control_event(value) for _, value in read_topic(settings, control_topic)]
    return [e for e in events if isinstance(e, RolloutDecided) and e.key == ROLLOUT]


def _wait(condition: Any, timeout: float, what: str, *logs: ServiceProcess) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            tails = "\n".join(f"{p.name}:\n{p.log_tail()}" for p in logs)
            raise AssertionError(f"{what} after {timeout}s\n{tails}")
        time.sleep(0.2)
    return value


@pytest.fixture
def namespace(
    kafka_bootstrap: str, tmp_path: Path
) -> Iterator[tuple[TopicCatalog, dict[str, str]]]:
    with namespace_of_its_own(kafka_bootstrap, tmp_path, 2) as (topics, env):
        yield topics, env


def test_a_standby_controller_takes_over_when_the_active_one_is_killed(
    kafka_bootstrap: str, tmp_path: Path, namespace: tuple[TopicCatalog, dict[str, str]]
) -> None:
    topics, env = namespace
    keys = create_tenant(kafka_bootstrap, topics.control, TENANT)
    control = ControlService(tmp_path / "control.duckdb", env)
    controllers = [
        ServiceProcess(
            "services.controller",
            "controller",
            ["--tick", "0.1"],
            tmp_path / f"controller-{n}.log",
            {**env, "LIFTSTREAM_CONTROLLER_DATA_DIR": str(tmp_path / f"controller-{n}")},
        )
        for n in range(2)
    ]
    try:
        with ThreadPoolExecutor(3) as starting:  # each takes seconds: start them together
            for started in [starting.submit(p.start, 120.0) for p in (control, *controllers)]:
                started.result()
        # One active, one standby: the second to join does not take the work over.
        _wait(
            lambda: sorted(_role(c) for c in controllers) == ["active", "standby"],
            40,
            "not one active controller and one standby",
            *controllers,
        )
        base = f"/v1/tenants/{TENANT}"
        control.ok(
            "POST", f"{base}/experiments", keys["admin"], {"experiment": experiment("checkout")}
        )
        plan = {
            "key": ROLLOUT,
            "target": {"experiment": "checkout", "variant": "candidate"},
            "steps": [{"percent": 5, "min_duration_s": 3600, "min_units_per_arm": 100}],
            "guardrails": [{"metric": "errors", "direction": "decrease"}],
            "check_interval_s": 1,
        }
        control.ok(
            "PUT", f"{base}/rollouts/{ROLLOUT}", keys["admin"], {"plan": plan, "reason": "go"}
        )
        before = _wait(
            lambda: (found := _decisions(topics.control)) and len(found) >= 3 and found,
            30,
            "fewer than 3 decisions",
            *controllers,
        )
        active = next(c for c in controllers if _role(c) == "active")
        standby = next(c for c in controllers if c is not active)
        assert httpx.get(f"{standby.url}/healthz").json()["checks"] == 0

        killed_at = time.monotonic()
        active.process.kill()  # type: ignore[union-attr]
        active.process.wait()  # type: ignore[union-attr]
        seen = len(_decisions(topics.control))
        _wait(
            lambda: len(_decisions(topics.control)) > seen,
            45,
            "the standby made no decision",
            standby,
        )
        takeover_s = time.monotonic() - killed_at
        after = _wait(
            lambda: (found := _decisions(topics.control)) and len(found) >= seen + 2 and found,
            45,
            "the standby did not continue the rollout",
            standby,
        )
        assert _role(standby) == "active"
        assert httpx.get(f"{standby.url}/healthz").json()["checks"] >= 2
        indexes = Counter(d.check_index for d in after)
        assert max(indexes.values()) == 1, f"a check index written twice: {indexes}"
        assert sorted(indexes) == list(range(len(after))), "a check index was lost"
        assert {d.author for d in after} == {"controller"}
        assert len(before) >= 3
        print(f"\ntakeover: {takeover_s:.1f}s from SIGKILL to the next decision")
    finally:
        with ThreadPoolExecutor(3) as stopping:
            for process in (*controllers, control):
                stopping.submit(process.stop)
