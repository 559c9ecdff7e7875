"""Per-partition sums, dirty tracking and the records published from them."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.aggregates import MetricStats, StreamProgress, VariantUnits, parse_aggregate
from schemas.experiment import Aggregation
from services.stream.attribution import StatsKey, UnitsKey
from services.stream.partials import PartialAggregates

NOW = datetime(2024, 3, 1, tzinfo=UTC)
UNITS = UnitsKey("acme", "checkout", "control")
SUMS = StatsKey("acme", "checkout", "control", "purchase", Aggregation.SUM)


def owning(*partitions: int) -> PartialAggregates:
    partials = PartialAggregates()
    for partition in partitions:
        partials.assign(partition, [], {})
    partials.take_publication(NOW)
    return partials


def test_changes_are_published_once_as_records_of_their_partition() -> None:
    partials = owning(0, 1)
    partials.apply(1, {UNITS: (1, 0), SUMS: (2.5, 6.25)})
    partials.apply(1, {UNITS: (1, 0), SUMS: (1.5, 2.25)})
    publication = partials.take_publication(NOW)
    by_kind = {type(record): record for record in publication.aggregates}
    assert len(publication.aggregates) == 2
    units = by_kind[VariantUnits]
    stats = by_kind[MetricStats]
    assert isinstance(units, VariantUnits) and isinstance(stats, MetricStats)
    assert (units.source_partition, units.units, units.excluded_units) == (1, 2, 0)
    assert (stats.sum, stats.sum_sq) == (4.0, 8.5)
    assert stats.record_key == b"stats|acme|checkout|control|purchase|sum|1"
    assert not partials.take_publication(NOW)


def test_progress_follows_the_aggregates_and_covers_both_topics() -> None:
    partials = owning(3)
    partials.apply(3, {UNITS: (1, 0)})
    partials.processed(3, "ns.exposures", 9)
    partials.processed(3, "ns.outcomes", 4)
    partials.processed(3, "ns.outcomes", 5)
    publication = partials.take_publication(NOW)
    assert publication.progress == [
        StreamProgress(
            source_partition=3,
            updated_at=NOW,
            next_offsets={"ns.exposures": 10, "ns.outcomes": 6},
        )
    ]
    # A refused message still advances progress, with no aggregate change.
    partials.processed(3, "ns.outcomes", 6)
    again = partials.take_publication(NOW)
    assert again.aggregates == []
    assert again.progress[0].next_offsets["ns.outcomes"] == 7


def test_assign_rebuilds_from_unit_contributions_and_republishes_everything() -> None:
    partials = PartialAggregates()
    contributions = [{UNITS: (1, 0), SUMS: (2.0, 4.0)}, {UNITS: (1, 0), SUMS: (3.0, 9.0)}]
    partials.assign(0, contributions, {"ns.exposures": 17})
    assert partials.owned() == [0]
    publication = partials.take_publication(NOW)
    values = {parse_aggregate(r.model_dump_json()).record_key: r for r in publication.aggregates}
    assert values[b"units|acme|checkout|control|0"].units == 2  # type: ignore[union-attr]
    assert values[b"stats|acme|checkout|control|purchase|sum|0"].sum == 5.0  # type: ignore[union-attr]
    assert [p.next_offsets for p in publication.progress] == [{"ns.exposures": 17}]


def test_revoked_partition_is_no_longer_published() -> None:
    partials = owning(0, 1)
    partials.apply(0, {UNITS: (1, 0)})
    partials.apply(1, {UNITS: (1, 0)})
    partials.revoke([1])
    assert {r.source_partition for r in partials.take_publication(NOW).aggregates} == {0}
    assert not partials.owns(1)


def test_failed_publication_is_retried_on_the_next_snapshot() -> None:
    partials = owning(0)
    partials.apply(0, {UNITS: (1, 0)})
    partials.processed(0, "ns.exposures", 0)
    failed = partials.take_publication(NOW)
    partials.restore(failed)
    retried = partials.take_publication(NOW)
    assert [r.record_key for r in retried.aggregates] == [r.record_key for r in failed.aggregates]
    assert retried.progress == failed.progress


def test_rounding_residue_below_zero_is_published_as_zero() -> None:
    partials = owning(0)
    partials.apply(0, {SUMS: (0.1, 0.30000000000000004)})
    partials.apply(0, {SUMS: (-0.1, -0.30000000000000010)})
    (record,) = partials.take_publication(NOW).aggregates
    assert isinstance(record, MetricStats)
    assert record.sum_sq == 0.0


def test_one_tenants_unpublishable_sums_never_hold_back_the_others() -> None:
    partials = owning(0)
    nan = float("nan")
    partials.apply(0, {StatsKey("mallory", "e", "a", "buy", Aggregation.SUM): (nan, nan)})
    partials.apply(0, {UnitsKey("alice", "e", "a"): (1, 0)})
    publication = partials.take_publication(NOW)
    assert [(type(r).__name__, r.tenant_id) for r in publication.aggregates] == [  # type: ignore[union-attr]
        ("VariantUnits", "alice")
    ]
    assert [p.source_partition for p in publication.progress] == []  # nothing processed yet
