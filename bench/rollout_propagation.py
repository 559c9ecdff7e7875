"""From a rollback decision on the control topic to SDKs serving the control again.

A control service runs on the real broker (a fresh namespace). Each round applies a
rollout plan to a new experiment through the API, then writes the controller's own
rollback decision for it to the control topic (``decide`` on inputs where the candidate's
errors are 60% higher: a real rollback, with its evidence). It times, per SDK, the
moment its ``ConfigPoller`` installs the snapshot with the experiment killed, from the
decision's ``occurred_at``. ``--sdks`` pollers listen to the config stream (Server-Sent
Events, the default), as many poll ``GET /v1/config`` with the ETag every
``--poll-interval`` seconds: the baseline, measured in the same run.

    python -m bench.rollout_propagation [--rounds 5] [--sdks 10] [--poll-interval 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer

from liftstream.local_config import ConfigPoller
from schemas.control import control_event_json
from schemas.rollout import ArmInput, CheckInputs, MetricInput
from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.control_domain.control_log import read_control_state
from services.controller.checks import decision_event, due_checks
from tests.integration.helpers_control import ControlService, create_tenant

TENANT = "bench"


def arm(units: int, errors: int) -> ArmInput:
    return ArmInput(
        units=units, metrics={"errors": MetricInput(n=units, sum_x=errors, sum_xx=errors)}
    )


def killed(poller: ConfigPoller, key: str) -> bool:
    evaluator = poller.evaluator
    return evaluator is not None and any(
        entry.killed for entry in evaluator.snapshot.experiments if entry.experiment.key == key
    )


def one_round(
    control: ControlService,
    admin: str,
    catalog: TopicCatalog,
    bootstrap: str,
    pollers: dict[str, list[ConfigPoller]],
    index: int,
) -> dict[str, list[float]]:
    key = f"exp-{index}"
    control.ok(
        "POST",
        f"/v1/tenants/{TENANT}/experiments",
        admin,
        {
            "experiment": {
                "key": key,
                "variants": [
                    {"key": "control", "weight": 50},
                    {"key": "candidate", "weight": 50},
                ],
                "metrics": [{"name": "errors", "event": "request_error", "type": "count"}],
            }
        },
    )
    plan = {
        "key": f"{key}-rollout",
        "target": {"experiment": key, "variant": "candidate"},
        "steps": [{"percent": 5}, {"percent": 50}],
        "guardrails": [{"metric": "errors", "direction": "decrease"}],
        "check_interval_s": 1,
    }
    control.ok("PUT", f"/v1/tenants/{TENANT}/rollouts/{plan['key']}", admin, {"plan": plan})
    time.sleep(1.5)  # every SDK has the rollout's first step, and the check is due
    state = read_control_state(bootstrap, catalog.control)
    now = datetime.now(UTC)
    due = next(d for d in due_checks(state, now) if d.key == plan["key"])
    event = decision_event(
        due, CheckInputs(as_of=now, control=arm(5000, 250), treatment=arm(5000, 400))
    )
    assert event.decision == "rollback", event.evidence.reasons
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    producer.send(catalog.control, key=event.partition_key, value=control_event_json(event))
    producer.flush()
    producer.close()
    decided = event.occurred_at.timestamp()
    deadline = time.monotonic() + 30
    every = [p for group in pollers.values() for p in group]
    while not all(killed(p, key) for p in every) and time.monotonic() < deadline:
        time.sleep(0.005)
    return {
        kind: [(p.installed_at or float("nan")) - decided for p in group if killed(p, key)]
        for kind, group in pollers.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sdks", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap = os.environ["LIFTSTREAM_BOOTSTRAP"]
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    catalog = TopicCatalog(namespace=namespace)
    home = Path(tempfile.mkdtemp())
    env = {**os.environ, "LIFTSTREAM_NAMESPACE": namespace, "LIFTSTREAM_HOME": str(home)}
    ensure_topics(bootstrap, catalog)
    keys = create_tenant(bootstrap, catalog.control, TENANT)
    control = ControlService(home / "control.duckdb", env).start()
    pollers = {
        "stream (SSE)": [
            ConfigPoller(control.url, keys["ingest"], interval_s=30, stream=True).start()
            for _ in range(args.sdks)
        ],
        f"ETag polling every {args.poll_interval:g} s": [
            ConfigPoller(control.url, keys["ingest"], interval_s=args.poll_interval).start()
            for _ in range(args.sdks)
        ],
    }
    times: dict[str, list[float]] = {kind: [] for kind in pollers}
    try:
        for index in range(args.rounds):
            for kind, seconds in one_round(
                control, keys["admin"], catalog, bootstrap, pollers, index
            ).items():
                times[kind] += seconds
    finally:
        for group in pollers.values():
            for poller in group:
                poller.stop()
        control.stop()
        delete_namespace_topics(bootstrap, namespace)
    print(f"{args.rounds} rollbacks x {args.sdks} SDKs each way; decision -> SDK serving control")
    for kind, seconds in times.items():
        ordered = sorted(seconds)
        print(
            f"{kind:32s} median {statistics.median(ordered) * 1000:7.0f} ms   "
            f"max {ordered[-1] * 1000:7.0f} ms   ({len(ordered)} SDK updates)"
        )


if __name__ == "__main__":
    main()
