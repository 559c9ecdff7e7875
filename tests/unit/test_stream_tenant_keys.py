"""The stream's de-duplication is scoped by tenant: unit states are kept per
``tenant:unit``, so a tenant reusing another tenant's event ids (and unit ids) is counted
apart, while a re-sent event of one tenant still counts once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.events import ExposureEvent, OutcomeEvent
from schemas.topics import TopicCatalog
from services.stream.intake import SourceMessage
from services.stream.processor import StreamProcessor

CATALOG = TopicCatalog(namespace="ns", event_partitions=1)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_equal_event_ids_of_two_tenants_both_count_and_a_resend_counts_once() -> None:
    processor = StreamProcessor(CATALOG)
    processor.assign(0, {}, {})
    exposure_id, outcome_id = uuid.uuid4(), uuid.uuid4()
    messages = []
    for tenant in ("alice", "mallory", "alice"):  # alice's events twice: a re-send
        exposure = ExposureEvent(
            event_id=exposure_id,
            tenant_id=tenant,
            unit_id="u1",
            timestamp=NOW,
            experiment_key="checkout",
            variant_key="control",
        )
        outcome = OutcomeEvent(
            event_id=outcome_id, tenant_id=tenant, unit_id="u1", timestamp=NOW, event="buy"
        )
        messages.append((CATALOG.exposures, exposure.partition_key, exposure.to_json()))
        messages.append((CATALOG.outcomes, outcome.partition_key, outcome.to_json()))
    offsets = {CATALOG.exposures: 0, CATALOG.outcomes: 0}
    for topic, key, value in messages:
        assert processor.handle(SourceMessage(topic, 0, offsets[topic], key, value)) is None
        offsets[topic] += 1

    totals = processor.partials.totals(0)
    for tenant in ("alice", "mallory"):
        assert totals[(tenant, "checkout", "control")] == (1, 0)
        assert totals[(tenant, "checkout", "control", "buy", "count")] == (1, 1)
    assert set(processor.units[0]) == {b"alice:u1", b"mallory:u1"}
