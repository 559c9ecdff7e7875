"""Per-tenant token buckets and the collector's configuration, with a fake clock."""

from __future__ import annotations

import pytest

from services.collector.config import CollectorConfig, Quota, load_config
from services.quotas import TenantQuotas
from services.settings import parse_tenant_quotas


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_tenant_gets_its_burst_then_is_refused_with_the_wait_until_it_refills() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=10, burst=30), clock)
    assert [quotas.admit("a", 10).allowed for _ in range(3)] == [True, True, True]
    refused = quotas.admit("a", 10)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(1.0)
    assert refused.retry_after_header == "1"
    clock.now += 1.0
    assert quotas.admit("a", 10).allowed


def test_one_tenants_burst_leaves_another_tenant_untouched() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=5, burst=5), clock)
    while quotas.admit("bursty", 1).allowed:
        pass
    assert all(quotas.admit("calm", 1).allowed for _ in range(5))


def test_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=2, burst=4), clock)
    assert quotas.admit("a", 4).allowed
    clock.now += 3600  # an hour idle refills to the burst only
    assert quotas.admit("a", 4).allowed
    assert not quotas.admit("a", 1).allowed
    clock.now += 0.5
    assert quotas.admit("a", 1).allowed


def test_a_batch_larger_than_the_burst_passes_when_the_bucket_is_full() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=1, burst=3), clock)
    assert quotas.admit("a", 50).allowed
    refused = quotas.admit("a", 50)
    assert not refused.allowed and refused.retry_after_header == "3"


def test_refused_requests_take_no_tokens() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=1, burst=2), clock)
    assert quotas.admit("a", 2).allowed
    for _ in range(10):
        assert not quotas.admit("a", 1).allowed
    clock.now += 1.0
    assert quotas.admit("a", 1).allowed


def test_configuration_from_the_environment() -> None:
    config = load_config(
        {
            "LIFTSTREAM_COLLECTOR_MAX_EVENTS": "50",
            "LIFTSTREAM_COLLECTOR_RATE": "7",
            "LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": "big=100:400, small=1",
        }
    )
    assert config.max_events == 50
    assert config.quota_of("other") == Quota(7, CollectorConfig().default_quota.burst)
    assert config.quota_of("big") == Quota(100, 400)
    assert config.quota_of("small") == Quota(1, 1)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"LIFTSTREAM_COLLECTOR_MAX_EVENTS": "many"}, "MAX_EVENTS"),
        ({"LIFTSTREAM_COLLECTOR_RATE": "-1"}, "RATE"),
        ({"LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": "a=x:1"}, "a=x:1"),
        ({"LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": "a=0:1"}, "a=0:1"),
    ],
)
def test_malformed_configuration_names_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        load_config(environ)


def test_parse_tenant_quotas_of_nothing_is_empty() -> None:
    assert parse_tenant_quotas("") == {}


def test_peek_tells_whether_an_event_would_pass_without_taking_it() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=1, burst=2), clock)
    assert quotas.peek("a").allowed and quotas.peek("a").allowed
    assert quotas.admit("a", 2).allowed
    refused = quotas.peek("a")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1.0)
    clock.now += 1
    assert quotas.peek("a").allowed
    assert quotas.admit("a", 1).allowed


def test_a_refund_gives_back_what_was_taken_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    quotas = TenantQuotas(lambda _: Quota(rate_per_s=1, burst=5), clock)
    assert quotas.admit("a", 5).allowed
    assert not quotas.admit("a", 5).allowed
    quotas.refund("a", 5)
    assert quotas.admit("a", 5).allowed
    quotas.refund("a", 50)  # more than the burst was never taken
    quotas.refund("a", 50)
    assert quotas.admit("a", 5).allowed
    assert not quotas.admit("a", 1).allowed
