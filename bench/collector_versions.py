"""Two versions of the collector, taking turns: which one answers a request sooner.

``python -m bench.collector_versions CHECKOUT_A CHECKOUT_B [--requests 400]`` needs a
broker (``LIFTSTREAM_BOOTSTRAP``). Each checkout (a git worktree of this repository,
its compiled modules built) runs its own ``python -m services.collector`` (the
checkout's ``.venv`` if it has one) on a namespace and tenant of its own. One client
(``bench.collector_rate.RawClient``, pre-built requests of 500 fresh events) sends
``--requests`` requests to each, 10 to one then 10 to the other, each waiting for its
answer, so that the machine's load weighs on both alike. It prints each one's p50 and
mean latency and B's over A's. The namespaces' topics are deleted afterwards.

Used for the collector's changes in ``docs/benchmarks.md`` (a change is kept when B,
the change, is faster in repeated runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.collector_rate import (
    TENANT,
    RawClient,
    make_batches,
    settings_from_environment,
    start_collector_command,
    wait_until_key_known,
)
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.control_domain.tenants import bootstrap_tenant

TURN = 10
WARM_UP = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector_versions", description=__doc__)
    parser.add_argument("checkouts", nargs=2, type=Path)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args(argv)
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[RawClient] = []
    namespaces: list[str] = []
    bootstrap = ""
    try:
        for checkout in args.checkouts:
            settings = settings_from_environment("cv")
            bootstrap = settings.bootstrap
            ensure_topics(settings.bootstrap, settings.topics)
            namespaces.append(settings.namespace)
            key = bootstrap_tenant(settings, TENANT).key.secret_key
            venv_python = checkout / ".venv" / "bin" / "python"
            env = {
                **os.environ,
                "LIFTSTREAM_NAMESPACE": settings.namespace,
                "LIFTSTREAM_HOME": str(settings.home),
                "LIFTSTREAM_COLLECTOR_RATE": "10000000",
                "LIFTSTREAM_COLLECTOR_BURST": "10000000",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(checkout.resolve()),
            }
            process, url = start_collector_command(
                [str(venv_python if venv_python.exists() else sys.executable)],
                env,
                settings.home / "collector.log",
                cwd=checkout,
            )
            processes.append(process)
            wait_until_key_known(url, key)
            clients.append(RawClient(url, key))
        count = WARM_UP + args.requests
        bodies = [orjson.dumps({"events": batch}) for batch in make_batches(2 * count, 500)]
        requests = [
            [client.request_of(body) for body in bodies[number::2]]
            for number, client in enumerate(clients)
        ]
        latencies: list[list[float]] = [[], []]
        for start in range(0, count, TURN):
            for client, mine, timed in zip(clients, requests, latencies, strict=True):
                for request in mine[start : start + TURN]:
                    began = time.perf_counter()
                    status, answer = client.send(request)
                    if status != 202:
                        raise RuntimeError(f"{status} {answer[:200]!r}")
                    if start >= WARM_UP:
                        timed.append(time.perf_counter() - began)
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
            process.wait(30)
        if namespaces:
            delete_namespace_topics(bootstrap, *namespaces)
    for checkout, timed in zip(args.checkouts, latencies, strict=True):
        print(
            f"{checkout!s:<40} p50 {statistics.median(timed) * 1000:.3f} ms   "
            f"mean {statistics.mean(timed) * 1000:.3f} ms"
        )
    a, b = latencies
    print(
        f"B/A: mean {statistics.mean(b) / statistics.mean(a):.3f}, "
        f"median {statistics.median(b) / statistics.median(a):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
