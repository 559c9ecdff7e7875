"""The local supervisor's Prometheus metrics: restarts and liveness of each part.

Served on a loopback port of the supervisor's own (``metrics_url`` in platform.json), from
a registry of its own, so that nothing else of the process is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


@dataclass
class SupervisorMetrics:
    url: str
    restarts: Counter
    up: Gauge
    _server: Any

    @classmethod
    def serve(cls, parts: list[str]) -> SupervisorMetrics:
        registry = CollectorRegistry()
        restarts = Counter(
            "liftstream_supervisor_restarts",
            "Times the supervisor started a part again after it exited.",
            ["part"],
            registry=registry,
        )
        up = Gauge(
            "liftstream_supervisor_part_up",
            "1 while the part runs, 0 while it is down.",
            ["part"],
            registry=registry,
        )
        for part in parts:
            restarts.labels(part)
            up.labels(part).set(1)
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        return cls(f"http://127.0.0.1:{server.server_port}/metrics", restarts, up, server)

    def part_down(self, part: str) -> None:
        self.up.labels(part).set(0)

    def restarted(self, part: str) -> None:
        self.restarts.labels(part).inc()
        self.up.labels(part).set(1)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
