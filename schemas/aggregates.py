"""Records on the compacted aggregates topic, written by the stream processor.

The stream worker keeps state per source partition (like the event topics), so each keeps
partial sufficient statistics for the units it owns. Every record therefore names its
``source_partition``; a reader sums the partials of all partitions. Keys are unique per
(record kind, tenant, experiment, variant, metric, partition), so compaction keeps the
latest partial of each.

- ``VariantUnits``: units exposed to a variant (n), and units excluded because they saw
  more than one variant of the experiment.
- ``MetricStats``: Σx and Σx² of the unit-level values of one (event, aggregation) over
  the units of a variant. Units with no such event have x = 0 and add nothing to the
  sums, so n comes from ``VariantUnits``.
- ``MetricSums``: for a metric *defined* on the experiment or the tenant whose unit value
  is more than an event's conversion/count/sum (mean, ratio, attribution window, fixed
  cap, CUPED covariate): n and the nine sums of ``analytics.unit_metrics.VariantSums``
  over the variant's units, for the definition with ``definition_hash``. Metrics with a
  percentile cap cannot be kept live (the cap depends on every unit); they are replayed.
- ``StreamProgress``: the next offsets the stream has fully processed for one source
  partition; published after the aggregates it covers.
- ``DefinitionError``: a metric definition of one tenant's experiment that the stream
  could not compile or apply, and why. The stream quarantines it (keeps no sums for it)
  and goes on with every other definition; the results service shows the reason on the
  experiment while the definition with ``definition_hash`` is the current one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from schemas.experiment import Aggregation
from schemas.identifiers import EventName, Key, TenantId
from schemas.limits import MAX_TEXT_CHARS


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_partition: int = Field(ge=0)
    updated_at: AwareDatetime


class VariantUnits(_Record):
    kind: Literal["variant_units"] = "variant_units"
    tenant_id: TenantId
    experiment_key: Key
    variant_key: Key
    units: int = Field(ge=0)
    excluded_units: int = Field(default=0, ge=0, description="Saw more than one variant.")

    @property
    def record_key(self) -> bytes:
        return (
            f"units|{self.tenant_id}|{self.experiment_key}|{self.variant_key}"
            f"|{self.source_partition}"
        ).encode()


class MetricStats(_Record):
    kind: Literal["metric_stats"] = "metric_stats"
    tenant_id: TenantId
    experiment_key: Key
    variant_key: Key
    event: EventName
    aggregation: Aggregation
    sum: float
    sum_sq: float = Field(ge=0)

    @property
    def record_key(self) -> bytes:
        return (
            f"stats|{self.tenant_id}|{self.experiment_key}|{self.variant_key}|{self.event}"
            f"|{self.aggregation.value}|{self.source_partition}"
        ).encode()


class MetricSums(_Record):
    kind: Literal["metric_sums"] = "metric_sums"
    tenant_id: TenantId
    experiment_key: Key
    variant_key: Key
    metric: Key
    definition_hash: str = Field(description="Of the metric definition the sums are for.")
    n: int = Field(ge=0)
    sum_x: float
    sum_xx: float = Field(ge=0)
    sum_y: float = 0.0
    sum_yy: float = Field(default=0.0, ge=0)
    sum_xy: float = 0.0
    sum_c: float = 0.0
    sum_cc: float = Field(default=0.0, ge=0)
    sum_xc: float = 0.0

    @property
    def record_key(self) -> bytes:
        return (
            f"sums|{self.tenant_id}|{self.experiment_key}|{self.variant_key}|{self.metric}"
            f"|{self.source_partition}"
        ).encode()


class StreamProgress(_Record):
    kind: Literal["progress"] = "progress"
    next_offsets: dict[str, int] = Field(
        description="Topic name -> next offset fully processed on source_partition."
    )

    @property
    def record_key(self) -> bytes:
        return f"progress|{self.source_partition}".encode()


class DefinitionError(BaseModel):
    """A quarantined metric definition (not a partial: one record per metric)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["definition_error"] = "definition_error"
    updated_at: AwareDatetime
    tenant_id: TenantId
    experiment_key: Key
    metric: Key
    definition_hash: str = Field(max_length=128)
    stage: Literal["stream"] = "stream"
    reason: str = Field(max_length=MAX_TEXT_CHARS, description="What failed, for the tenant.")

    @property
    def record_key(self) -> bytes:
        return f"error|{self.tenant_id}|{self.experiment_key}|{self.metric}".encode()


Aggregate = VariantUnits | MetricStats | MetricSums | StreamProgress | DefinitionError
AggregateRecord = Annotated[Aggregate, Field(discriminator="kind")]
_aggregate_adapter: TypeAdapter[Aggregate] = TypeAdapter(AggregateRecord)


def parse_aggregate(payload: bytes | str) -> Aggregate:
    return _aggregate_adapter.validate_json(payload)
