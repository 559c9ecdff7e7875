"""Guarded rollouts on the real broker and services, with no person in the loop.

One platform for the module: a stream worker, the control service and the rollout
controller as processes on the real broker, a webhook receiver, and simulated services
that use the SDK (config pushed over Server-Sent Events, events sent to Kafka).

- A bad candidate (error rate +20% relative, +30 ms at p99) rolled out 1% -> 5% -> 25%
  to ``region = eu`` is rolled back by the controller: the decision event carries its
  evidence, the webhook receiver gets a signed call, every SDK serves the control again.
  The check count and the time from the decision to the SDKs are printed.
- A flag whose on value is that bad candidate, rolled out 1% -> 5% -> 25% of ``region =
  eu`` with as many units held back on off, is rolled back the same way: the flag is
  killed and every SDK (``client.enabled``, config pollers, the OpenFeature provider)
  serves it off again. The plan applied again (version 2, the fix) starts with its own
  empty arms and advances past its first check, without the first rollout's units.
- A candidate with no effect reaches 100% through every step, an approval included,
  while the controller is killed (SIGKILL) mid-rollout and restarted: no decision is
  repeated or lost, and replaying the control log reproduces every decision exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason
from typer.testing import CliRunner

from liftstream.client import LiftstreamClient
from liftstream.openfeature import LiftstreamProvider
from liftstream.settings import load_settings
from liftstream_cli.main import app
from services.control_domain.control_log import decode_control_event
from services.controller.replay import replay
from services.webhook_signing import verify
from tests.integration.helpers_rollouts import (
    METRICS_TOKEN,
    TENANT,
    Platform,
    SimulatedService,
    define_metrics,
    experiment,
    rollout_platform,
    sdk_pollers,
)
from tests.integration.helpers_stream import read_topic

pytestmark = pytest.mark.integration

EU = {"attribute": "region", "op": "eq", "value": "eu"}
GUARDRAILS = [
    {"metric": "errors", "direction": "decrease"},
    {"metric": "slow_requests", "direction": "decrease"},
]


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with rollout_platform(kafka_bootstrap, tmp_path_factory.mktemp("rollouts")) as running:
        yield running


def wait_for(condition: Any, timeout: float, what: str, platform: Platform) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} after {timeout}s\ncontroller:\n{platform.controller.log_tail()}"
            )
        time.sleep(0.1)


def decisions(platform: Platform, key: str) -> list[dict[str, Any]]:
    return list(platform.api("GET", f"/rollouts/{key}/decisions?limit=1000", role="read"))


def rollout(platform: Platform, key: str) -> dict[str, Any]:
    return dict(platform.api("GET", f"/rollouts/{key}", role="read"))


def cli(platform: Platform, *args: str) -> str:
    """``liftstream ARGS`` against the platform, as its operator would type it."""
    result = CliRunner().invoke(
        app,
        list(args),
        env={
            "LIFTSTREAM_CONTROL_URL": platform.control.url,
            "LIFTSTREAM_RESULTS_URL": platform.results.url,
            "LIFTSTREAM_API_KEY": platform.keys["admin"],
            "LIFTSTREAM_TENANT": TENANT,
            "COLUMNS": "200",
        },
    )
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class BadCandidateRun:
    """What the controller did to the bad candidate, for the tests that read it."""

    plan: dict[str, Any]
    state: dict[str, Any]
    trail: list[dict[str, Any]]
    #: Seconds from the rollback decision to the last SDK installing the killed config.
    to_sdks: float
    units: int
    us_exposed: int


@pytest.fixture(scope="module")
def bad_candidate(platform: Platform) -> BadCandidateRun:
    """The bad candidate rolled out to ``region = eu`` until the controller rolls it back
    and every SDK serves the control again; run once, whichever test asks first."""
    platform.api("POST", "/experiments", {"experiment": experiment("checkout-bad")})
    plan: dict[str, Any] = {
        "key": "checkout-bad-rollout",
        "target": {"experiment": "checkout-bad", "variant": "candidate", "segment": EU},
        "steps": [
            {"percent": 1, "min_duration_s": 2, "min_units_per_arm": 50},
            {"percent": 5, "min_duration_s": 3, "min_units_per_arm": 300},
            {"percent": 25, "min_duration_s": 30, "min_units_per_arm": 5000},
        ],
        "guardrails": GUARDRAILS,
        "check_interval_s": 1,
        "planned_units": 4000,
        "webhooks": [{"url": platform.receiver.url}],
    }
    platform.api("PUT", f"/rollouts/{plan['key']}", {"plan": plan, "reason": "ship it"})
    control_url, ingest = platform.control.url, platform.keys["ingest"]
    service = SimulatedService(
        control_url, ingest, "checkout-bad", error_lift=0.2, added_ms=30.0, seed=1
    )
    others = sdk_pollers(control_url, ingest, 2)
    service.start()
    try:
        # Every SDK listens to the config stream (its poll interval is 5 s).
        wait_for(
            lambda: all(p.streaming for p in [service.client.config, *others] if p),
            20,
            "an SDK is not streaming",
            platform,
        )
        state = wait_for(
            lambda: (r := rollout(platform, plan["key"]))["status"] == "rolled_back" and r,
            150,
            "no rollback",
            platform,
        )
        trail = decisions(platform, plan["key"])
        # Every SDK serves the control again: the experiment is killed everywhere.
        sdks = [service.client.config, *others]
        wait_for(
            lambda: all(
                sdk is not None
                and sdk.evaluator is not None
                and sdk.evaluator.variant("checkout-bad", "any-unit", {"region": "eu"}) is None
                and any(e.killed for e in sdk.evaluator.snapshot.experiments)
                for sdk in sdks
            ),
            10,
            "an SDK still serves the candidate",
            platform,
        )
    finally:
        service.stop()
        for poller in others:
            poller.stop()
    decided_at = _timestamp(trail[-1]["occurred_at"])
    installed = max(t for sdk in sdks if sdk is not None and (t := sdk.installed_at) is not None)
    return BadCandidateRun(
        plan=plan,
        state=state,
        trail=trail,
        to_sdks=installed - decided_at,
        units=service.units,
        us_exposed=service.us_exposed,
    )


def test_a_bad_candidate_is_rolled_back_with_no_person_involved(
    platform: Platform, bad_candidate: BadCandidateRun
) -> None:
    plan, trail = bad_candidate.plan, bad_candidate.trail
    rollback = trail[-1]
    assert rollback["decision"] == "rollback"
    assert rollback["author"] == "controller"
    assert bad_candidate.state["automatic_rollbacks"] == 1
    to_sdks = bad_candidate.to_sdks
    evidence = rollback["evidence"]
    failed = [g for g in evidence["guardrails"] if g["verdict"] == "fail"]
    assert failed, evidence["guardrails"]
    for guardrail in failed:
        assert guardrail["interval"][0] > guardrail["threshold"]
        assert guardrail["p_value"] <= guardrail["alpha"] == 0.025
        assert guardrail["n_control"] > 0 and guardrail["n_treatment"] > 0
    assert {h["gate"] for h in evidence["health"]} == {
        "srm",
        "multiple_exposure",
        "no_data",
        "dead_letters",
    }
    assert bad_candidate.us_exposed == 0  # the segment: only region eu was ever in the rollout
    # The webhook receiver got a signed call for the rollback (after one 503 and a retry).
    secret = platform.api("GET", "/rollouts/webhook-secret")["secret"]
    calls = wait_for(
        lambda: [
            c for c in platform.receiver.calls if json.loads(c.body)["decision"] == "rollback"
        ],
        20,
        "no webhook call for the rollback",
        platform,
    )
    assert verify(secret, calls[0].body, platform.receiver.signature_of(calls[0]))
    assert not verify("another-secret", calls[0].body, platform.receiver.signature_of(calls[0]))
    print(
        f"\nbad candidate: rolled back at check {rollback['check_index'] + 1} (step "
        f"{rollback['evidence']['step_index'] + 1}, {rollback['evidence']['percent']:g}%), "
        f"{len(trail)} checks, {bad_candidate.units} units served; decision -> all SDKs "
        f"{to_sdks * 1000:.0f} ms; failed: {[g['metric'] for g in failed]}"
    )
    assert to_sdks < 5.0
    # Incidents prevented, for the operator's Prometheus; the webhook's retry is counted.
    metrics = httpx.get(
        f"{platform.controller.url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
    ).text
    assert "liftstream_rollout_automatic_rollbacks_total 1.0" in metrics
    hooks = httpx.get(f"{platform.controller.url}/v1/webhooks").json()
    assert hooks["failed"] == 0 and hooks["attempts"] > hooks["delivered"] >= 1
    # The trail and the evidence, as the CLI prints them.
    status = cli(platform, "rollout", "status", plan["key"])
    assert "rolled_back" in status and "rollback" in status and "controller" in status
    explained = cli(platform, "rollout", "explain", plan["key"])
    assert "rollback" in explained and "fail" in explained and "health srm: ok" in explained


def test_a_bad_flag_is_rolled_back_and_every_sdk_serves_it_off(platform: Platform) -> None:
    """The same bad candidate behind a flag: ``target: {flag: new-search}``; each step
    serves on to its percent of the segment and off to as many units held back, both
    logged; the controller compares them as it compares an experiment's arms."""
    define_metrics(platform)
    platform.api("POST", "/flags", {"flag": {"key": "new-search"}, "reason": "dark launch"})
    plan = {
        "key": "new-search-rollout",
        "target": {"flag": "new-search", "segment": EU},
        "steps": [
            {"percent": 1, "min_duration_s": 2, "min_units_per_arm": 50},
            {"percent": 5, "min_duration_s": 3, "min_units_per_arm": 300},
            {"percent": 25, "min_duration_s": 30, "min_units_per_arm": 5000},
        ],
        "guardrails": GUARDRAILS,
        "check_interval_s": 1,
        "planned_units": 4000,
        "webhooks": [{"url": platform.receiver.url}],
    }
    key = plan["key"]
    platform.api("PUT", f"/rollouts/{key}", {"plan": plan, "reason": "ship it behind a flag"})
    control_url, ingest = platform.control.url, platform.keys["ingest"]
    service = SimulatedService(
        control_url, ingest, "new-search", error_lift=0.2, added_ms=30.0, seed=3, flag=True
    )
    others = sdk_pollers(control_url, ingest, 2)
    provider_client = LiftstreamClient.from_config(control_url, ingest, poll_interval_s=5)
    openfeature_api.set_provider_and_wait(
        LiftstreamProvider(provider_client), domain="rollout-acceptance"
    )
    service.start()
    try:
        state = wait_for(
            lambda: (r := rollout(platform, key))["status"] == "rolled_back" and r,
            150,
            "no rollback of the flag",
            platform,
        )
        sdks = [service.client.config, provider_client.config, *others]
        eu_units = [(f"probe-{index}", {"region": "eu"}) for index in range(2000)]
        wait_for(
            lambda: all(
                sdk is not None
                and sdk.evaluator is not None
                and any(f.killed for f in sdk.evaluator.snapshot.flags)
                for sdk in sdks
            ),
            10,
            "an SDK still serves the flag",
            platform,
        )
        flags = openfeature_api.get_client("rollout-acceptance")
        served_on = [
            unit
            for unit, attributes in eu_units
            if service.client.enabled("new-search", unit, attributes)
            or any(p.flag("new-search", unit, attributes) for p in others)
            or flags.get_boolean_value("new-search", True, EvaluationContext(unit, attributes))
        ]
        disabled = flags.get_boolean_details(
            "new-search", True, EvaluationContext("probe-0", {"region": "eu"})
        )
    finally:
        service.stop()
        openfeature_api.clear_providers()
        provider_client.close()
        for poller in others:
            poller.stop()
    assert served_on == []
    assert (disabled.value, disabled.reason) == (False, Reason.DISABLED)
    assert state["automatic_rollbacks"] == 1 and state["percent"] == 0
    served = platform.api("GET", "/flags/new-search", role="read")
    assert served["killed"] is True and served["flag"]["holdback"] > 0
    trail = decisions(platform, key)
    rollback = trail[-1]
    assert (rollback["decision"], rollback["author"]) == ("rollback", "controller")
    assert [d["step"] for d in trail if d["decision"] == "advance"] == [2, 3][
        : rollback["step"] - 1
    ]
    evidence = rollback["evidence"]
    failed = [g for g in evidence["guardrails"] if g["verdict"] == "fail"]
    assert failed and all(g["interval"][0] > g["threshold"] for g in failed)
    # The arms are the flag's on units and as many held back: the same share of traffic.
    assert all(h["ok"] for h in evidence["health"] if h["gate"] in ("srm", "multiple_exposure"))
    assert evidence["inputs"]["control_weight"] == evidence["inputs"]["treatment_weight"]
    assert service.us_exposed == 0
    calls = wait_for(
        lambda: [
            c
            for c in platform.receiver.calls
            if json.loads(c.body)["rollout"] == key and json.loads(c.body)["decision"] == "rollback"
        ],
        20,
        "no webhook call for the flag's rollback",
        platform,
    )
    secret = platform.api("GET", "/rollouts/webhook-secret")["secret"]
    assert verify(secret, calls[0].body, platform.receiver.signature_of(calls[0]))
    decided_at = _timestamp(rollback["occurred_at"])
    to_sdks = max(sdk.installed_at for sdk in sdks if sdk is not None) - decided_at  # type: ignore[operator]
    print(
        f"\nbad flag: rolled back at check {rollback['check_index'] + 1} (step "
        f"{evidence['step_index'] + 1}, {evidence['percent']:g}%), units on/off "
        f"{evidence['units_treatment']}/{evidence['units_control']}; decision -> all SDKs "
        f"{to_sdks * 1000:.0f} ms; failed: {[g['metric'] for g in failed]}"
    )
    assert to_sdks < 5.0
    assert "flag new-search" in cli(platform, "rollout", "status", key)
    # The team fixes the code and applies the plan again: its next version logs and reads
    # its own arms, so the same users coming back are not counted twice and the first
    # rollout's units do not sit in its arms (which held it forever on the SRM check).
    started = time.monotonic()
    platform.api("PUT", f"/rollouts/{key}", {"plan": {**plan, "version": 2}, "reason": "fixed"})
    fixed = SimulatedService(control_url, ingest, "new-search", seed=3, flag=True).start()
    try:
        second = wait_for(
            lambda: (
                [d for d in decisions(platform, key) if d["plan_version"] == 2]
                if any(
                    d["plan_version"] == 2 and d["decision"] != "hold"
                    for d in decisions(platform, key)
                )
                else None
            ),
            30,
            "the second rollout of the flag did not get past its first check",
            platform,
        )
    finally:
        fixed.stop()
    # The first decision that moved it (later checks of step 2 may have come since).
    moved = next(d for d in second if d["decision"] != "hold")
    assert moved["decision"] == "advance", moved["reason"]
    for decision in second[: second.index(moved) + 1]:
        assert all(h["ok"] for h in decision["evidence"]["health"] if h["gate"] == "srm")
    first_units = evidence["units_treatment"] + evidence["units_control"]
    entered = moved["evidence"]
    assert 0 < entered["units_treatment"] + entered["units_control"] < first_units
    print(
        f"fixed flag, plan v2: advanced at check {moved['check_index'] + 1} with units "
        f"on/off {entered['units_treatment']}/{entered['units_control']} "
        f"({time.monotonic() - started:.1f} s after the new version)"
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_good_candidate_completes_through_every_step_and_an_approval(
    platform: Platform,
) -> None:
    platform.api("POST", "/experiments", {"experiment": experiment("checkout-good")})
    plan = {
        "key": "checkout-good-rollout",
        "target": {"experiment": "checkout-good", "variant": "candidate", "segment": EU},
        "steps": [
            {"percent": 1, "min_duration_s": 1, "min_units_per_arm": 30},
            {"percent": 5, "min_duration_s": 1, "min_units_per_arm": 100},
            {"percent": 25, "min_duration_s": 1, "min_units_per_arm": 300, "approval": True},
            {"percent": 100, "min_duration_s": 1, "min_units_per_arm": 1000},
        ],
        "guardrails": GUARDRAILS,
        "alpha": 0.01,
        "check_interval_s": 1,
        "planned_units": 4000,
    }
    key = plan["key"]
    platform.api("PUT", f"/rollouts/{key}", {"plan": plan, "reason": "no effect expected"})
    service = SimulatedService(
        platform.control.url, platform.keys["ingest"], "checkout-good", seed=2
    )
    service.start()
    try:
        # Mid-rollout, after the first advance, the controller is killed and restarted.
        wait_for(lambda: rollout(platform, key)["step"] >= 2, 120, "no first advance", platform)
        platform.controller.process.kill()  # type: ignore[union-attr]
        platform.controller.stop()
        platform.controller.start(180.0)  # importing Faust is slow on a loaded machine
        waiting = wait_for(
            lambda: [
                d
                for d in decisions(platform, key)
                if any("needs an approval" in r for r in d["evidence"]["reasons"])
            ],
            120,
            "no hold for the approval",
            platform,
        )
        assert rollout(platform, key)["step"] == 2  # held on 5% until a person approves
        cli(platform, "rollout", "approve", key, "--reason", "dashboards look fine")
        final = wait_for(
            lambda: (r := rollout(platform, key))["status"] in ("completed", "rolled_back") and r,
            150,
            "the rollout did not end",
            platform,
        )
    finally:
        service.stop()
    trail = decisions(platform, key)
    assert final["status"] == "completed", trail[-1]
    assert final["percent"] == 100
    assert [d["step"] for d in trail if d["decision"] == "advance"] == [2, 3, 4]
    # Not repeated, not lost: one decision per check index, in order, across the restart.
    assert [d["check_index"] for d in trail] == list(range(len(trail)))
    assert waiting
    # Replaying the control log through the decision function gives every decision again.
    events = [
        (offset, decode_control_event(value))
        for offset, (_key, value) in enumerate(read_topic_all(platform))
    ]
    replayed, differences = replay(events)
    assert differences == []
    assert replayed >= len(trail)
    print(f"\ngood candidate: completed after {len(trail)} checks, {service.units} units")


def read_topic_all(platform: Platform) -> list[tuple[bytes | None, bytes]]:
    settings = load_settings()
    return read_topic(settings, settings.topics.control)


def test_simulate_replays_the_bad_candidates_log_against_its_plan(
    platform: Platform, bad_candidate: BadCandidateRun, tmp_path: Path
) -> None:
    """``liftstream rollout simulate`` on the raw log of the experiment rolled back above:
    the plan, checked on the log's daily figures, rolls back too, with its evidence."""
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump({**bad_candidate.plan, "webhooks": []}))

    def replayed() -> list[dict[str, Any]]:
        try:  # until the results service has loaded the log, it knows no such experiment
            output = cli(
                platform,
                "rollout",
                "simulate",
                "-f",
                str(plan_file),
                "--experiment",
                "checkout-bad",
                "--json",
            )
        except AssertionError:
            return []
        checks = json.loads(output)
        return checks if checks and checks[-1]["decision"] == "rollback" else []

    checks = wait_for(replayed, 60, "the replay did not roll back", platform)
    failed = [g for g in checks[-1]["evidence"]["guardrails"] if g["verdict"] == "fail"]
    assert failed and all(g["interval"][0] > 0 for g in failed)
    assert checks[-1]["evidence"]["units_treatment"] > 0
    # A flag's plan replays against the experiment that tested the same change: its
    # control stands for off, its only treatment for on; it rolls back the same way.
    flag_file = tmp_path / "flag-plan.yaml"
    flag_plan = {**bad_candidate.plan, "target": {"flag": "checkout-bad-flag", "segment": EU}}
    flag_file.write_text(yaml.safe_dump({**flag_plan, "webhooks": []}))
    args = ["rollout", "simulate", "-f", str(flag_file), "--experiment", "checkout-bad", "--json"]
    flag_checks = json.loads(cli(platform, *args))
    assert flag_checks[-1]["decision"] == "rollback"
    flag_failed = [g for g in flag_checks[-1]["evidence"]["guardrails"] if g["verdict"] == "fail"]
    assert flag_failed and all(g["interval"][0] > 0 for g in flag_failed)


def test_the_config_stream_pushes_changes_and_ends_when_its_key_is_revoked(
    platform: Platform,
) -> None:
    """Server-Sent Events: the snapshot at once, each change after, and no more config for
    a key that was revoked (the stream ends; the SDK would fall back and be refused)."""
    created = platform.api("POST", "/keys", {"role": "ingest", "label": "sse test"})
    url = f"{platform.control.url}/v1/config/stream"
    headers = {"Authorization": f"Bearer {created['key']}"}
    revisions: list[int] = []
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=30)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("data: "):
                revisions.append(json.loads(line[len("data: ") :])["revision"])
                if len(revisions) == 1:
                    platform.api("PUT", "/holdout", {"percent": 1.5, "reason": "push"})
                elif len(revisions) == 2:
                    platform.api("POST", f"/keys/{created['key_id']}/revoke", {"reason": "gone"})
    # The stream ended by itself once the key was revoked.
    assert len(revisions) == 2 and revisions[1] > revisions[0]
    refused = httpx.get(url, headers=headers, timeout=5)
    assert refused.status_code == 401
