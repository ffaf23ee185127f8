"""The live path's latency histogram in plain numbers reads on /metrics exactly like the
prometheus_client Histogram and Counter it replaced."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tidings.gateway.metrics import LATENCY_BUCKETS, LatencyHistogram
from tidings.gateway.service import Gateway
from tidings.settings import AuthSettings, load_settings

NAME = "tidings_gateway_delivery_latency_seconds"
# On a bound (le is inclusive), between, below the first, above the last, and zero.
LAGS = [0.0, 0.0005, 0.001, 0.0011, 0.0025, 0.004, 0.05, 0.3, 1.0, 2.5, 4.9, 5.0, 5.1, 60.0]


def reference(lags: list[float]) -> str:
    """What prometheus_client's own objects write for the same observations."""
    registry = CollectorRegistry()
    hist = Histogram(
        NAME,
        "From the stream's timestamp to the fan-out, per notification.",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    count = Counter(
        "tidings_gateway_notifications", "Live notifications fanned out.", registry=registry
    )
    for lag in lags:
        hist.observe(lag)
        count.inc()
    return generate_latest(registry).decode()


@pytest.fixture
def gateway() -> Gateway:
    """A gateway object, not started: its metrics registry is what /metrics serves."""
    return Gateway(load_settings(auth=AuthSettings(jwt_secret="s" * 32)))  # type: ignore[arg-type]


@pytest.mark.parametrize("lags", [[], LAGS, LAGS * 3 + [0.012] * 7])
def test_the_exposition_matches_prometheus_client(gateway: Gateway, lags: list[float]) -> None:
    for lag in lags:
        gateway.metrics.latency.observe(lag)
    ours = generate_latest(gateway.metrics.registry).decode()
    theirs = reference(lags)
    for name in (NAME, "tidings_gateway_notifications"):
        expected = [line for line in theirs.splitlines() if name in line]
        assert expected  # the reference has the family at all
        assert [line for line in ours.splitlines() if name in line] == expected


def test_a_value_lands_in_the_first_bucket_whose_bound_holds_it() -> None:
    h = LatencyHistogram((0.1, 1.0))
    for value in (0.1, 0.10001, 1.0, 7.0):
        h.observe(value)
    assert h.buckets() == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert h.count == 4
    assert h.sum == pytest.approx(8.20001)


def test_unsorted_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        LatencyHistogram((1.0, 0.5))
