"""Each service's settings from its environment: one pydantic-settings class per service.

Every class reads the variables all services share (``ServiceSettings``, full names):

- ``LIFTSTREAM_BOOTSTRAP``, ``LIFTSTREAM_NAMESPACE`` (``liftstream``),
  ``LIFTSTREAM_PARTITIONS`` (4), ``LIFTSTREAM_REPLICATION_FACTOR`` (1),
  ``LIFTSTREAM_MIN_INSYNC_REPLICAS`` (0: a majority of the replicas),
  ``LIFTSTREAM_HOME`` (``~/.liftstream``): where the platform is (``platform`` gives
  them as the ``liftstream.settings.Settings`` the services' parts take);
- ``LIFTSTREAM_KAFKA_OUTAGE_S``: how long a Kafka outage is ridden out (600 s);
- ``LIFTSTREAM_METRICS_TOKEN``, ``LIFTSTREAM_METRICS_TENANT_LABELS``: ``/metrics``
  (``services.operator_metrics``);
- ``LIFTSTREAM_WEBHOOK_SECRET``: the operator's secret rollout webhooks are signed with
  (``services.webhook_signing``; the control service hands out tenants' secrets);
- ``LIFTSTREAM_WEBHOOK_ALLOW_HOSTS``: internal hosts, addresses and networks rollout
  webhooks may call (``services.webhook_policy``; the control service checks plans with
  it, the controller every call); by default only public addresses;
- ``LIFTSTREAM_SERVICE_TOKEN``: the operator's token one service presents to another (the
  controller reads rollouts' shadow entry gates from the results service with it; the
  results service accepts it on that read-only route only, for any tenant);

and its own under its prefix: ``CollectorSettings`` ``LIFTSTREAM_COLLECTOR_*``,
``StreamSettings`` ``LIFTSTREAM_STREAM_*``, ``ControlSettings`` ``LIFTSTREAM_CONTROL_*``,
``ResultsSettings`` ``LIFTSTREAM_RESULTS_*``, ``ControllerSettings``
``LIFTSTREAM_CONTROLLER_*`` (see each class). A service never reads ``platform.json``:
that file is the CLI's (``liftstream_cli.local_settings``).

``load(SettingsClass, environ=None)`` reads them (``environ`` replaces ``os.environ``, for
tests) and raises ``ValueError`` naming each malformed variable and its value.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from liftstream.settings import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS, Settings
from services.quotas import Quota

PREFIX = "LIFTSTREAM_"
METRICS_TOKEN_ENV = "LIFTSTREAM_METRICS_TOKEN"
TENANT_LABELS_ENV = "LIFTSTREAM_METRICS_TENANT_LABELS"
WEBHOOK_SECRET_ENV = "LIFTSTREAM_WEBHOOK_SECRET"
SERVICE_TOKEN_ENV = "LIFTSTREAM_SERVICE_TOKEN"
WEBHOOK_ALLOW_ENV = "LIFTSTREAM_WEBHOOK_ALLOW_HOSTS"
OUTAGE_ENV = "LIFTSTREAM_KAFKA_OUTAGE_S"
DEFAULT_OUTAGE_S = 600.0
#: The stream worker's intervals (seconds) between aggregate publications and snapshots.
DEFAULT_PUBLISH_INTERVAL = 0.5
DEFAULT_SNAPSHOT_INTERVAL = 30.0
#: Where a stream worker serves its health and metrics endpoints.
DEFAULT_STREAM_WEB_HOST = "127.0.0.1"
DEFAULT_STREAM_WEB_PORT = 0
#: Most Kafka producers a collector spreads the event topics' partitions over.
MAX_COLLECTOR_PRODUCERS = 16

S = TypeVar("S", bound="ServiceSettings")

#: The mapping ``load`` was given instead of ``os.environ`` (None: ``os.environ``).
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "liftstream_settings_environ", default=None
)


def _log_level(value: str) -> str:
    level = value.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"unknown log level {value!r}")
    return level


def _flag(value: Any) -> Any:
    # The historical reading of LIFTSTREAM_METRICS_TENANT_LABELS: anything else is off.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return value


LogLevel = Annotated[str, AfterValidator(_log_level)]


def _allow_list(value: str) -> str:
    from services.webhook_policy import WebhookPolicy

    WebhookPolicy.parse(value)  # raises ValueError naming the bad entry
    return value


class _MappingSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class ServiceSettings(BaseSettings):
    """What every service reads; subclasses add their own variables under their prefix."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )

    bootstrap: str = Field("", validation_alias="LIFTSTREAM_BOOTSTRAP")
    namespace: str = Field(DEFAULT_NAMESPACE, min_length=1, validation_alias="LIFTSTREAM_NAMESPACE")
    partitions: PositiveInt = Field(DEFAULT_PARTITIONS, validation_alias="LIFTSTREAM_PARTITIONS")
    replication_factor: PositiveInt = Field(1, validation_alias="LIFTSTREAM_REPLICATION_FACTOR")
    min_insync_replicas: NonNegativeInt = Field(
        0, validation_alias="LIFTSTREAM_MIN_INSYNC_REPLICAS"
    )
    home: Path = Field(Path("~/.liftstream"), validation_alias="LIFTSTREAM_HOME")
    kafka_outage_s: PositiveFloat = Field(DEFAULT_OUTAGE_S, validation_alias=OUTAGE_ENV)
    metrics_token: str = Field("", validation_alias=METRICS_TOKEN_ENV)
    webhook_secret: str = Field("", validation_alias=WEBHOOK_SECRET_ENV)
    service_token: str = Field("", validation_alias=SERVICE_TOKEN_ENV)
    webhook_allow_hosts: Annotated[str, AfterValidator(_allow_list)] = Field(
        "", validation_alias=WEBHOOK_ALLOW_ENV
    )
    metrics_tenant_labels: Annotated[bool, BeforeValidator(_flag)] = Field(
        False, validation_alias=TENANT_LABELS_ENV
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings, env_settings)
        return (init_settings, _MappingSource(settings_cls, environ))

    @property
    def platform(self) -> Settings:
        """Where the platform is, as the services' parts take it."""
        return Settings(
            bootstrap=self.bootstrap,
            namespace=self.namespace,
            partitions=self.partitions,
            home=self.home.expanduser(),
            results_url="",
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
        )


def parse_tenant_quotas(text: str) -> dict[str, Quota]:
    """``a=100:200,b=5:10`` -> per-tenant quotas; ValueError naming the bad part."""
    quotas: dict[str, Quota] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        tenant, _, numbers = part.partition("=")
        rate, _, burst = numbers.partition(":")
        try:
            quota = Quota(float(rate), float(burst or rate))
        except ValueError:
            raise ValueError(f"'{part}' is not tenant=rate:burst") from None
        if not tenant or quota.rate_per_s <= 0 or quota.burst < 1:
            raise ValueError(f"'{part}' needs rate > 0 and burst >= 1")
        quotas[tenant.strip()] = quota
    return quotas


def _quotas(value: Any) -> Any:
    return parse_tenant_quotas(value) if isinstance(value, str) else value


class CollectorSettings(ServiceSettings):
    """``LIFTSTREAM_COLLECTOR_*``: the collector's limits and quotas.

    ``MAX_BODY_BYTES`` (5 MiB, larger is 413), ``MAX_EVENTS`` per batch (1000, more is
    413), ``MAX_EVENT_BYTES`` (64 KiB), ``MAX_FUTURE_S`` (300) and ``MAX_PAST_S`` (30
    days) around the collector's clock, ``RATE`` (5000 events/s) and ``BURST`` (10000) of
    a tenant's quota, ``TENANT_QUOTAS`` (``tenant=rate:burst,other=rate:burst``), and
    ``PRODUCE_TIMEOUT_S`` (10), how long a request waits for the broker before a 503, and
    ``PRODUCERS`` (4, at most 16), the Kafka producers (connections) the event topics'
    partitions are spread over (``services.collector.sink``).
    """

    model_config = SettingsConfigDict(env_prefix="LIFTSTREAM_COLLECTOR_")

    max_body_bytes: PositiveInt = 5 * 1024 * 1024
    max_events: PositiveInt = 1000
    max_event_bytes: PositiveInt = 64 * 1024
    max_future_s: PositiveFloat = 300.0
    max_past_s: PositiveFloat = 30 * 24 * 3600.0
    rate: PositiveFloat = 5000.0
    burst: PositiveFloat = 10000.0
    tenant_quotas: Annotated[dict[str, Quota], NoDecode, BeforeValidator(_quotas)] = Field(
        default_factory=dict
    )
    produce_timeout_s: PositiveFloat = 10.0
    producers: Annotated[int, Field(ge=1, le=MAX_COLLECTOR_PRODUCERS)] = 4


class StreamSettings(ServiceSettings):
    """``LIFTSTREAM_STREAM_*``: the stream worker.

    ``PUBLISH_INTERVAL`` (0.5 s) between aggregate publications, ``SNAPSHOT_INTERVAL``
    (30 s) between unit-state snapshots (a restarted worker re-processes at most this much
    of the log), ``ENGINE`` (``faust``, the ``faust.App`` worker; or ``aiokafka``, the
    plain consumer-group fallback), ``WEB_HOST`` (``127.0.0.1``; ``0.0.0.0`` in a container)
    and ``WEB_PORT`` (0, a free port, announced as ``stream worker ready at URL``, so that
    workers on one host never collide; deployments set one, 8793 in the chart and compose)
    of the worker's ``/healthz``, ``/readyz`` and ``/metrics``; and
    ``LIFTSTREAM_LOG_LEVEL`` (``INFO``).
    """

    model_config = SettingsConfigDict(env_prefix="LIFTSTREAM_STREAM_")

    publish_interval: PositiveFloat = DEFAULT_PUBLISH_INTERVAL
    snapshot_interval: PositiveFloat = DEFAULT_SNAPSHOT_INTERVAL
    engine: Literal["faust", "aiokafka"] = "faust"
    web_host: str = Field(DEFAULT_STREAM_WEB_HOST, min_length=1)
    web_port: int = Field(DEFAULT_STREAM_WEB_PORT, ge=0, le=65535)
    log_level: LogLevel = Field("INFO", validation_alias="LIFTSTREAM_LOG_LEVEL")


class ControlSettings(ServiceSettings):
    """``LIFTSTREAM_CONTROL_*``: the control service (no variables of its own yet)."""

    model_config = SettingsConfigDict(env_prefix="LIFTSTREAM_CONTROL_")


class ResultsSettings(ServiceSettings):
    """``LIFTSTREAM_RESULTS_*``: the results service (no variables of its own yet)."""

    model_config = SettingsConfigDict(env_prefix="LIFTSTREAM_RESULTS_")


class ControllerSettings(ServiceSettings):
    """``LIFTSTREAM_CONTROLLER_*``: the rollout controller.

    ``RESULTS_URL``: the results service, asked for rollouts' shadow entry gates (with
    ``LIFTSTREAM_SERVICE_TOKEN``); unset, a gated rollout holds ("gate unavailable").
    ``DATA_DIR`` (``$LIFTSTREAM_HOME/controller``): where the webhook delivery log is kept
    (give it a persistent volume: calls pending at a restart are sent again from it);
    ``WEBHOOK_RESEND_S`` (86400): decisions older than this are not sent again.
    """

    model_config = SettingsConfigDict(env_prefix="LIFTSTREAM_CONTROLLER_")

    results_url: str = ""
    data_dir: Path | None = None
    webhook_resend_s: PositiveFloat = 24 * 3600.0


def load_or_exit(settings_cls: type[S], service: str) -> S:
    """``load(settings_cls)``, or exit with status 2 naming what is malformed."""
    try:
        return load(settings_cls)
    except ValueError as error:
        print(f"invalid {service} configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def load(settings_cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """``settings_cls`` read from ``environ`` (default ``os.environ``).

    Raises ``ValueError`` naming each malformed variable, its value and the reason.
    """
    token = _ENVIRON.set(environ)
    try:
        return settings_cls()
    except ValidationError as error:
        raise ValueError(_describe(settings_cls, error)) from None
    finally:
        _ENVIRON.reset(token)


def _describe(settings_cls: type[ServiceSettings], error: ValidationError) -> str:
    prefix = settings_cls.model_config.get("env_prefix", PREFIX)
    problems = []
    for detail in error.errors(include_url=False):
        name = str(detail["loc"][0]) if detail["loc"] else ""
        variable = name if name.startswith(PREFIX) else prefix + name.upper()
        reason = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}={detail.get('input')!r}: {reason}")
    return "; ".join(problems)
