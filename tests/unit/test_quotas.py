"""Per-caller quotas (chronosched_server/quotas.py) on a fake clock."""

from __future__ import annotations

import pytest

from chronosched_server.errors import ResourceExhausted
from chronosched_server.quotas import QuotaConfig, Quotas

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_by_default_admits_everything() -> None:
    quotas = Quotas(QuotaConfig())
    assert not quotas.config.enabled
    for _ in range(10_000):
        quotas.admit("a")
        quotas.open_stream("a")
    assert quotas.streams("a") == 0


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    quotas = Quotas(QuotaConfig(rate=10, burst=5), clock=clock)
    for _ in range(5):
        quotas.admit("a")
    with pytest.raises(ResourceExhausted) as refused:
        quotas.admit("a")
    assert refused.value.metadata["limit"] == "requests_per_second"
    assert float(refused.value.metadata["retry_after_s"]) == pytest.approx(0.1)
    # Another caller has its own bucket.
    quotas.admit("b")
    # A tenth of a second refills one request, and only one.
    clock.now += 0.1
    quotas.admit("a")
    with pytest.raises(ResourceExhausted):
        quotas.admit("a")
    # A long pause refills to the burst, not beyond it.
    clock.now += 60
    for _ in range(5):
        quotas.admit("a")
    with pytest.raises(ResourceExhausted):
        quotas.admit("a")


def test_sustained_rate_is_the_configured_one() -> None:
    clock = Clock()
    quotas = Quotas(QuotaConfig(rate=20, burst=1), clock=clock)
    admitted = 0
    for _ in range(10_000):  # one attempt every millisecond for 10 s
        clock.now += 0.001
        try:
            quotas.admit("a")
            admitted += 1
        except ResourceExhausted:
            pass
    assert admitted == pytest.approx(200, abs=2)


def test_streams_are_counted_per_caller_and_released() -> None:
    quotas = Quotas(QuotaConfig(max_streams=2))
    quotas.open_stream("w")
    quotas.open_stream("w")
    with pytest.raises(ResourceExhausted) as refused:
        quotas.open_stream("w")
    assert refused.value.metadata == {"limit": "streams_per_caller"}
    quotas.open_stream("other")
    quotas.close_stream("w")
    quotas.open_stream("w")
    assert quotas.streams("w") == 2
    quotas.close_stream("w")
    quotas.close_stream("w")
    assert quotas.streams("w") == 0
    # Closing more than was opened never goes negative.
    quotas.close_stream("w")
    assert quotas.streams("w") == 0


def test_idle_callers_are_forgotten() -> None:
    clock = Clock()
    quotas = Quotas(QuotaConfig(rate=1, burst=1), clock=clock)
    for i in range(1000):
        quotas.admit(f"c{i}")
    clock.now += 301
    quotas.admit("fresh")
    assert set(quotas._buckets) == {"fresh"}
