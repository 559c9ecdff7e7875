"""A shadow test as a rollout's entry gate: the decision before the first step (pure), the
projection (nobody served the candidate until the gate passes), the controller's reading
of the results service's gate (every failure is "unavailable", never an advance), and
the results service's acceptance of the operator's service token on that route only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from analytics.rollouts.decide import decide
from analytics.shadow import promotion_gate
from schemas.rollout import CheckInputs, RolloutPlan, ShadowEntryGate, ShadowGateInput
from services.control_domain.api_keys import KeyRecord
from services.controller.checks import decision_event, due_checks
from services.controller.gates import ShadowGates
from services.controller.replay import replay
from services.http_auth import install_key_checks
from services.results.shadow_api import shadow_router
from tests.unit.test_rollout_decide import HEALTHY, inputs, view
from tests.unit.test_rollout_projection import T0, applied, arm

GATE = {"shadow": "pricing-v2", "max_mismatch_beyond_noise": 0.002}


def gated(**changes: Any) -> RolloutPlan:
    from tests.unit.test_rollout_decide import plan

    return plan(entry_gate=GATE, **changes)


def said(allowed: bool, upper: float, **changes: Any) -> ShadowGateInput:
    fields: dict[str, Any] = {
        **GATE,
        "confidence": 0.95,
        "available": True,
        "allowed": allowed,
        "estimate": upper / 2,
        "low": -upper / 4,
        "upper": upper,
        "candidate_runs": 20_000,
        "candidate_mismatches": 40,
        "secondary_runs": 20_000,
        "secondary_mismatches": 30,
        "detail": "from the results service",
    }
    fields.update(changes)
    return ShadowGateInput(**fields)


def with_gate(gate: ShadowGateInput | None, seconds: float = 120) -> CheckInputs:
    return inputs(*HEALTHY, seconds=seconds).model_copy(update={"entry_gate": gate})


def test_the_gate_is_bounded_and_its_refusals_name_the_field() -> None:
    for bad, field in (
        ({"shadow": "pricing-v2", "max_mismatch_beyond_noise": 2}, "max_mismatch_beyond_noise"),
        ({**GATE, "confidence": 1.0}, "confidence"),
        ({**GATE, "confidence": 0.4}, "confidence"),
        ({**GATE, "shadow": "no spaces allowed"}, "shadow"),
        ({**GATE, "extra": 1}, "extra"),
    ):
        with pytest.raises(ValidationError) as refused:
            gated().model_validate({**gated().model_dump(), "entry_gate": bad})
        assert field in str(refused.value)
    assert gated().entry_gate == ShadowEntryGate(**GATE, confidence=0.95)


def test_before_the_gate_passes_a_check_holds_with_the_shadows_evidence() -> None:
    outcome = decide(view(gated(), entered=False), with_gate(said(False, 0.004)))
    assert outcome.decision == "hold"
    assert (outcome.step_index, outcome.percent) == (0, 0.0)
    (reason,) = outcome.evidence.reasons
    assert reason.startswith("held: waiting for the shadow gate")
    assert "[-0.100%, 0.400%]" in reason and "20000 candidate" in reason
    assert outcome.evidence.entry_gate is not None and outcome.evidence.entry_gate.upper == 0.004
    # Guardrails are not judged on a step nobody is in.
    assert outcome.evidence.guardrails == [] and outcome.evidence.health == []


def test_the_check_the_gate_allows_advances_to_the_first_step() -> None:
    outcome = decide(view(gated(), entered=False), with_gate(said(True, 0.0015)))
    assert outcome.decision == "advance"
    assert (outcome.step_index, outcome.percent) == (0, 1.0)
    assert outcome.evidence.reasons[0].startswith("shadow gate passed")
    assert outcome.evidence.entry_gate == said(True, 0.0015)


@pytest.mark.parametrize(
    ("gate", "why"),
    [
        (None, "gate unavailable: not asked"),
        (said(True, 0.001, available=False, detail="HTTP 503"), "gate unavailable: HTTP 503"),
        # The service said allowed, but its bound is not below the plan's threshold.
        (said(True, 0.003), "waiting for the shadow gate"),
        # An answer to another question (another threshold) is not the plan's gate.
        (said(True, 0.001, max_mismatch_beyond_noise=0.01), "not the plan's"),
    ],
)
def test_no_answer_or_a_wrong_answer_never_advances(gate: ShadowGateInput | None, why: str) -> None:
    outcome = decide(view(gated(), entered=False), with_gate(gate))
    assert outcome.decision == "hold"
    assert why in outcome.evidence.reasons[0]


def test_a_paused_gated_rollout_holds_even_when_the_gate_passes() -> None:
    outcome = decide(view(gated(), entered=False, paused=True), with_gate(said(True, 0.001)))
    assert (outcome.decision, outcome.evidence.reasons) == ("hold", ["paused by a person"])


def test_once_entered_the_gate_is_not_read_again() -> None:
    outcome = decide(view(gated(), entered=True), with_gate(None))
    assert outcome.decision == "advance" and outcome.step_index == 1
    assert outcome.evidence.entry_gate is None
    assert [g.verdict for g in outcome.evidence.guardrails] == ["pass", "pass"]


def test_the_gate_is_the_results_services_promotion_gate() -> None:
    """The figures the results service computes (Newcombe bounds) pass through as is."""
    gate = promotion_gate("pricing-v2", 60, 20_000, 40, 20_000, 0.002)
    assert gate.low is not None and gate.estimate is not None and gate.upper is not None
    assert gate.estimate == pytest.approx(0.001)
    assert gate.low < gate.estimate < gate.upper
    assert (gate.candidate_mismatches, gate.secondary_mismatches) == (60, 40)


# The projection: the candidate is served to nobody until the gate passes.


def gate_check(log: Any, seconds: float, gate: ShadowGateInput) -> str:
    at = T0 + timedelta(seconds=seconds)
    (due,) = due_checks(log.state, at)
    assert not due.view.entered
    event = decision_event(due, CheckInputs(as_of=at, entry_gate=gate))
    log.add(event)
    return event.decision


def test_a_gated_plan_serves_nobody_until_the_gate_passes_then_starts_its_first_step() -> None:
    log = applied(entry_gate=GATE)
    assert log.entry().killed and not log.rollout().entered
    assert log.rollout().percent == 0.0
    assert gate_check(log, 10, said(False, 0.01)) == "hold"
    assert log.entry().killed
    assert gate_check(log, 20, said(True, 0.0015)) == "advance"
    assert log.rollout().entered and not log.entry().killed
    assert log.entry().experiment.traffic == 1 and log.rollout().step_index == 0
    assert log.rollout().started_at == T0 + timedelta(seconds=20)
    # The first step's own checks follow, guardrails and all (step 2 needs an approval).
    assert log.check(T0 + timedelta(seconds=30), arm(500, 50), arm(500, 50)) == "hold"
    last = log.events[-1][1].evidence  # type: ignore[union-attr]
    assert last.entry_gate is None and [g.verdict for g in last.guardrails] == ["pass"]
    assert "needs an approval" in last.reasons[-1]
    replayed, differences = replay(log.events)
    assert (replayed, differences) == (3, [])


def test_a_new_version_without_the_gate_starts_at_once() -> None:
    log = applied(entry_gate=GATE)
    from services.control.rollout_commands import define_rollout
    from tests.unit.test_rollout_projection import AUTHOR, plan

    log.add(define_rollout(log.state, AUTHOR, plan(version=2), "skip the gate"))
    assert log.rollout().entered and not log.entry().killed


# The controller's reading of the gate.


def gates(handler: Any, url: str = "http://results", token: str | None = "svc") -> ShadowGates:
    return ShadowGates(url, token, transport=httpx.MockTransport(handler))


ENTRY = ShadowEntryGate(**GATE)


def test_the_controller_asks_with_the_service_token_and_keeps_the_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = promotion_gate("pricing-v2", 30, 20_000, 25, 20_000, 0.002).model_dump(mode="json")
        return httpx.Response(200, json=body)

    answer = gates(handler).read("acme", ENTRY)
    assert seen[0].url.path == "/v1/tenants/acme/shadows/pricing-v2/gate"
    assert seen[0].url.params["max_beyond_noise"] == "0.002"
    assert seen[0].headers["authorization"] == "Bearer svc"
    assert answer.available and answer.allowed and answer.candidate_runs == 20_000
    assert answer.upper is not None and answer.upper < 0.002


@pytest.mark.parametrize(
    ("handler", "available", "detail"),
    [
        (lambda r: httpx.Response(404, json={"detail": "none"}), True, "no observation"),
        (lambda r: httpx.Response(503), False, "HTTP 503"),
        (lambda r: httpx.Response(401), False, "HTTP 401"),
        (lambda r: httpx.Response(200, json={"allowed": True}), False, "did not parse"),
        (
            lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")),
            False,
            "did not answer",
        ),
    ],
)
def test_anything_but_an_answer_is_unavailable(handler: Any, available: bool, detail: str) -> None:
    answer = gates(handler).read("acme", ENTRY)
    assert (answer.available, answer.allowed) == (available, False)
    assert detail in answer.detail
    assert decide(view(gated(), entered=False), with_gate(answer)).decision == "hold"


def test_without_url_or_token_the_gate_is_unavailable() -> None:
    def ok(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    assert "RESULTS_URL" in gates(ok, url="").read("a", ENTRY).detail
    assert "SERVICE_TOKEN" in gates(ok, token=None).read("a", ENTRY).detail


# The results service: the service token opens the gate route, of any tenant, and no other.


def results_app(store: Any) -> TestClient:
    app = FastAPI()
    reader = KeyRecord(key_id="k-read", tenant_id="acme", role="read", revoked=False, label="")
    install_key_checks(app, lambda key: reader if key == "acme-read" else None)
    app.include_router(shadow_router(store, service_token="svc-token"))
    return TestClient(app)


def test_the_service_token_opens_only_the_gate_route(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.results.shadow_api as shadow_api

    monkeypatch.setattr(shadow_api, "read_observations", lambda *a: ([], 0))

    class Store:
        def cursor(self, _budget: float) -> Any:
            from contextlib import nullcontext

            return nullcontext(None)

    client = results_app(Store())
    gate = "/v1/tenants/{}/shadows/pricing-v2/gate?max_beyond_noise=0.002"
    for tenant in ("acme", "globex"):
        answer = client.get(gate.format(tenant), headers={"Authorization": "Bearer svc-token"})
        assert answer.status_code == 404  # authorised; no observation of that test
    wrong = client.get(gate.format("acme"), headers={"Authorization": "Bearer svc-nope"})
    assert wrong.status_code == 401
    results = client.get(
        "/v1/tenants/acme/shadows/pricing-v2", headers={"Authorization": "Bearer svc-token"}
    )
    assert results.status_code == 401
    reader = client.get(gate.format("acme"), headers={"Authorization": "Bearer acme-read"})
    assert reader.status_code == 404
    other = client.get(gate.format("globex"), headers={"Authorization": "Bearer acme-read"})
    assert other.status_code == 403


def test_the_examples_gated_plan_applies_to_the_demo_experiment_and_waits() -> None:
    from pathlib import Path

    from liftstream_cli.yaml_files import load_model_file
    from schemas.control import ExperimentDefined
    from schemas.experiment import Experiment
    from services.control.rollout_commands import define_rollout
    from tests.unit.test_rollout_projection import AUTHOR, Log

    examples = Path(__file__).resolve().parents[2] / "examples"
    demo = load_model_file(examples / "checkout-button.yaml", Experiment, "experiment")
    the_plan = load_model_file(examples / "rollout-checkout-shadow-gate.yaml", RolloutPlan, "p")
    log = Log()
    log.add(ExperimentDefined(tenant_id="acme", author="k1", experiment=demo))
    log.add(define_rollout(log.state, AUTHOR, the_plan, "example"))
    assert the_plan.entry_gate == ShadowEntryGate(
        shadow="pricing-v2", max_mismatch_beyond_noise=0.01, confidence=0.95
    )
    rollout = log.state.tenants["acme"].rollouts[the_plan.key]
    assert not rollout.entered and log.state.tenants["acme"].experiments[demo.key].killed


def test_a_plan_and_decision_without_a_gate_are_written_as_before_gates_existed() -> None:
    """Services from before entry gates (whose models forbid unknown fields) keep reading
    plans and decisions that have none."""
    from tests.unit.test_rollout_decide import plan

    ungated = plan()
    outcome = decide(view(ungated), inputs(*HEALTHY))
    assert "entry_gate" not in ungated.model_dump_json()
    assert "entry_gate" not in outcome.evidence.model_dump_json()
    gated_outcome = decide(view(gated(), entered=False), with_gate(said(True, 0.001)))
    written = gated_outcome.evidence.model_dump_json()
    assert type(gated_outcome.evidence).model_validate_json(written) == gated_outcome.evidence


def test_the_cli_explains_a_gated_check_and_shows_the_rollout_waiting() -> None:
    from liftstream_cli.console import out
    from liftstream_cli.rollout_commands import render_evidence, render_state

    held = decide(view(gated(), entered=False), with_gate(said(False, 0.004)))
    with out.capture() as captured:
        render_evidence(
            {
                "check_index": 0,
                "plan_version": 1,
                "occurred_at": "2026-03-01T12:02:00+00:00",
                "decision": held.decision,
                "evidence": held.evidence.model_dump(mode="json"),
            }
        )
        render_state(
            {
                "key": "new-checkout",
                "plan": gated().model_dump(mode="json"),
                "status": "running",
                "step": 1,
                "percent": 0.0,
                "checks": 1,
                "approved_steps": [],
                "automatic_rollbacks": 0,
                "entered": False,
            }
        )
    text = " ".join(captured.get().split())
    assert "entry gate: shadow pricing-v2: not allowed; from the results service" in text
    assert "interval [-0.100%, 0.400%]" in text and "guardrails (" not in text
    assert "at 0% of the segment" in text and "(waiting: nobody is served the candidate)" in text
