"""``/metrics`` for the operator: Prometheus text behind an operator token, no tenant names.

Every HTTP service (control, results, collector, and the stream worker's web server)
serves ``GET /metrics`` only to ``Authorization: Bearer <token>`` where the token is
``LIFTSTREAM_METRICS_TOKEN`` from the service's environment. It is the operator's, not a
tenant's: an API key (even an admin key) belongs to one tenant, and these figures are the
platform's. Without the variable, ``/metrics`` is refused to everyone (401), so a fresh
deployment leaks nothing. Prometheus sends it with ``authorization: {credentials_file:
...}`` in a scrape config.

Metrics carry no tenant names by default; ``LIFTSTREAM_METRICS_TENANT_LABELS=1`` adds a
``tenant`` label where a service has per-tenant counts (the collector), for an operator
who wants them and accepts that whoever reads ``/metrics`` sees every tenant's name.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from services.control_domain.control_log import ControlProjection
from services.settings import METRICS_TOKEN_ENV, ServiceSettings, load

_BEARER = "bearer "


def operator_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The operator's metrics token, or None when metrics are not served."""
    token = load(ServiceSettings, environ).metrics_token.strip()
    return token or None


def tenant_labels_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return load(ServiceSettings, environ).metrics_tenant_labels


def _refuse(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def add_metrics_route(app: FastAPI, registry: CollectorRegistry, token: str | None = None) -> None:
    """``GET /metrics``: ``registry`` as Prometheus text, for the operator token only
    (``token``, default ``LIFTSTREAM_METRICS_TOKEN``)."""
    expected = token if token is not None else operator_token()

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        reason = metrics_refusal(request.headers.get("authorization", ""), expected)
        if reason is not None:
            raise _refuse(reason)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def metrics_refusal(authorization: str, expected: str | None) -> str | None:
    """Why a request with this ``Authorization`` header may not read ``/metrics`` (answer
    401 with it), or None when it may: ``expected`` is the operator token (None: metrics
    are served to no one)."""
    if expected is None:
        return f"metrics are served only when {METRICS_TOKEN_ENV} is set"
    if not authorization.lower().startswith(_BEARER):
        return "metrics need 'Authorization: Bearer <operator token>'"
    given = authorization[len(_BEARER) :].strip().encode()
    if not hmac.compare_digest(given, expected.encode()):
        return "not the operator's metrics token"
    return None


class FollowerMetrics(Collector):
    """A control-topic follower's figures, read when scraped."""

    def __init__(self, follower: ControlProjection, service: str) -> None:
        self._follower = follower
        self._service = service

    def collect(self) -> Iterator[Metric]:
        follower = self._follower
        yield self._figure(
            CounterMetricFamily,
            "liftstream_control_events_quarantined",
            "Control events this service could not read or apply: skipped and shown to "
            "their tenant.",
            follower.quarantined,
        )
        yield self._figure(
            CounterMetricFamily,
            "liftstream_control_follower_hook_errors",
            "Errors after applying a control event (e.g. mirroring it to a file).",
            follower.hook_errors,
        )
        yield self._figure(
            GaugeMetricFamily,
            "liftstream_control_next_offset",
            "The next control-topic offset this service will read.",
            follower.state.next_offset,
        )

    def _figure(
        self,
        family: type[CounterMetricFamily | GaugeMetricFamily],
        name: str,
        documentation: str,
        value: float,
    ) -> Metric:
        """One figure of this service: a family with its single ``service``-labelled sample."""
        metric = family(name, documentation, labels=["service"])
        metric.add_metric([self._service], value)
        return metric


def follower_registry(follower: ControlProjection, service: str) -> CollectorRegistry:
    """A registry of its own holding ``follower``'s figures."""
    registry = CollectorRegistry()
    registry.register(FollowerMetrics(follower, service))
    return registry
