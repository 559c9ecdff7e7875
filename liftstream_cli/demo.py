"""The demo: define ``checkout-button``, simulate users through the SDK, show the scorecard.

Each simulated user is assigned by the SDK, exposed, views ``1 + Poisson(2)`` pages and
buys with probability 10% (control) or 13% (treatment), spending a log-normal amount
(median about 33); page views have no real effect. At the CLI's default of 20,000 users
the conversion lift is about 6.7 standard errors, so p < 0.01 for essentially every seed
(a miss needs a four-sigma shortfall; the worst of seeds 0-99 gave p = 3e-5). Unit ids
depend on the seed, so the 50/50 split is a fresh draw per seed: the sample-ratio check
(alarm at p < 0.001) fires for about one seed in a thousand, as it would for any
correctly randomised experiment (seed 20 is one; seeds 0-299 otherwise pass).

After sending, the demo waits until the stream has processed, and the results service
has loaded, everything up to the topics' end offsets, so the scorecard covers every user.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich.console import Console
from rich.progress import Progress

from liftstream.client import LiftstreamClient
from liftstream_cli.control import apply_experiment, load_experiment_file
from liftstream_cli.local_settings import Settings
from liftstream_cli.platform import PlatformSession
from liftstream_cli.results_api import ResultsApi
from schemas.experiment import Experiment
from schemas.results import LoadProgress, Scorecard
from schemas.topics import TopicCatalog

DEMO_TENANT = "demo"
DEMO_EXPERIMENT_FILE = Path(__file__).resolve().parents[1] / "examples" / "checkout-button.yaml"
CONVERSION_RATE = {"control": 0.10, "treatment": 0.13}
MEAN_EXTRA_PAGE_VIEWS = 2.0
PURCHASE_LOG_MEAN, PURCHASE_LOG_SIGMA = 3.5, 0.6
CATCH_UP_TIMEOUT_S = 600.0

Offsets = dict[str, dict[int, int]]


@dataclass(frozen=True)
class SimulationSummary:
    units: int
    exposed: Counter[str]
    purchases: Counter[str]
    page_views: int


def run_demo(
    settings: Settings,
    platform: PlatformSession,
    console: Console,
    units: int,
    seed: int,
) -> Scorecard:
    """Define the experiment, simulate ``units`` users, wait for and return the scorecard."""
    bootstrap = platform.state.bootstrap
    # The platform's own namespace: it may have been started with another environment.
    settings = replace(
        settings,
        bootstrap=bootstrap,
        namespace=platform.state.namespace or settings.namespace,
        control_url=platform.state.control_url,
        api_key=platform.state.api_key,
    )
    experiment = load_experiment_file(DEMO_EXPERIMENT_FILE)
    applied = apply_experiment(experiment, DEMO_TENANT, settings, reason="liftstream demo")
    console.print(
        f"applied {experiment.key} for tenant {DEMO_TENANT}"
        + ("" if applied.changed else " (already defined so)")
    )
    started = time.monotonic()
    with LiftstreamClient(DEMO_TENANT, bootstrap, settings.namespace) as client:
        summary = simulate(client, experiment, units, seed, console)
    console.print(
        f"sent {summary.units:,} users in {time.monotonic() - started:.1f}s: "
        f"exposed {dict(summary.exposed)}, purchases {dict(summary.purchases)}, "
        f"{summary.page_views:,} page views",
        highlight=False,
    )
    started = time.monotonic()
    target = catch_up_target(bootstrap, settings.topics)
    with ResultsApi(platform.state.results_url, platform.state.api_key) as api:
        wait_until_processed(api, target, console, platform.check)
        console.print(
            f"the stream and the loader caught up in {time.monotonic() - started:.1f}s",
            highlight=False,
        )
        return Scorecard.model_validate(api.scorecard_json(DEMO_TENANT, experiment.key))


class Behaviour(NamedTuple):
    page_views: int
    purchase: float | None


def demo_unit_id(seed: int, index: int) -> str:
    return f"user-{seed}-{index}"


def simulated_behaviour(rng: np.random.Generator, variant: str) -> Behaviour:
    """What one exposed user of ``variant`` does: page views, and a purchase or not."""
    views = 1 + int(rng.poisson(MEAN_EXTRA_PAGE_VIEWS))
    purchase = None
    if rng.random() < CONVERSION_RATE.get(variant, CONVERSION_RATE["control"]):
        purchase = round(float(rng.lognormal(PURCHASE_LOG_MEAN, PURCHASE_LOG_SIGMA)), 2)
    return Behaviour(views, purchase)


def simulate(
    client: LiftstreamClient, experiment: Experiment, units: int, seed: int, console: Console
) -> SimulationSummary:
    """Send the simulated users' events; returns what was sent, by variant."""
    rng = np.random.default_rng(seed)
    exposed: Counter[str] = Counter()
    purchases: Counter[str] = Counter()
    page_views = 0
    start = datetime.now(UTC)
    with Progress(transient=True, console=console) as progress:
        task = progress.add_task("simulating users", total=units)
        for index in range(units):
            unit_id = demo_unit_id(seed, index)
            seen_at = start + timedelta(milliseconds=index)
            exposure = client.expose(experiment, unit_id, timestamp=seen_at)
            if exposure is not None:
                variant = exposure.variant_key
                exposed[variant] += 1
                behaviour = simulated_behaviour(rng, variant)
                for view in range(behaviour.page_views):
                    client.track(unit_id, "page_view", timestamp=seen_at + timedelta(seconds=view))
                page_views += behaviour.page_views
                if behaviour.purchase is not None:
                    bought_at = seen_at + timedelta(seconds=behaviour.page_views)
                    client.track(unit_id, "purchase", value=behaviour.purchase, timestamp=bought_at)
                    purchases[variant] += 1
            if index % 500 == 0:
                progress.update(task, completed=index)
        progress.update(task, description="waiting for Kafka to acknowledge", completed=units)
        client.flush()
    return SimulationSummary(units, exposed, purchases, page_views)


@dataclass(frozen=True)
class CatchUpTarget:
    """Offsets the stream must have aggregated and the loader must have loaded."""

    stream: Offsets
    loaded: Offsets

    @property
    def total(self) -> int:
        return sum(
            sum(p.values()) for section in (self.stream, self.loaded) for p in section.values()
        )


def catch_up_target(bootstrap: str, topics: TopicCatalog) -> CatchUpTarget:
    """Everything written so far: events through the stream; events and control loaded."""
    event_topics = [topics.exposures, topics.outcomes]
    from services.broker.topics import end_offsets

    ends = end_offsets(bootstrap, [*event_topics, topics.control])
    return CatchUpTarget(stream={topic: ends[topic] for topic in event_topics}, loaded=ends)


def behind(progress: LoadProgress, target: CatchUpTarget) -> int:
    """How many messages the stream and the loader still have to go to reach ``target``."""
    remaining = 0
    for reached, wanted in ((progress.stream, target.stream), (progress.loaded, target.loaded)):
        for topic, partitions in wanted.items():
            for partition, offset in partitions.items():
                remaining += max(0, offset - reached.get(topic, {}).get(str(partition), 0))
    return remaining


def wait_until_processed(
    api: ResultsApi,
    target: CatchUpTarget,
    console: Console,
    check_platform: Callable[[], None],
    timeout_s: float = CATCH_UP_TIMEOUT_S,
) -> None:
    """Block until the stream and the loader have reached ``target``; TimeoutError if not."""
    total = target.total
    deadline = time.monotonic() + timeout_s
    with Progress(transient=True, console=console) as progress:
        task = progress.add_task("stream and loader catching up", total=max(total, 1))
        while True:
            check_platform()
            remaining = behind(api.progress(), target)
            progress.update(task, completed=total - remaining)
            if remaining == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the stream and loader are still {remaining:,} messages behind after "
                    f"{timeout_s:.0f}s; see the stream and results logs"
                )
            time.sleep(0.5)
