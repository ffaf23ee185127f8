"""Connect-rate token buckets: a burst, then the refill rate; bounded however many keys."""

from __future__ import annotations

import pytest

from tidings.gateway import connect_rate
from tidings.gateway.connect_rate import ConnectRate


def test_a_burst_then_the_rate_and_the_wait_is_exact() -> None:
    now = [0.0]
    rate = ConnectRate(rate=2.0, burst=3, clock=lambda: now[0])
    assert [rate.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.take("a") == pytest.approx(0.5)  # one token in 1/2 s
    assert rate.take("b") == 0.0  # another key has its own bucket
    now[0] += 0.5
    assert rate.take("a") == 0.0
    assert rate.take("a") == pytest.approx(0.5)
    assert rate.refused == 2


def test_zero_rate_is_no_limit() -> None:
    rate = ConnectRate(rate=0.0, burst=1)
    assert all(rate.take("a") == 0.0 for _ in range(1000))
    assert len(rate) == 0


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect_rate, "MAX_KEYS", 100)
    rate = ConnectRate(rate=1.0, burst=1, clock=lambda: 0.0)
    for i in range(1000):
        rate.take(f"10.0.{i // 256}.{i % 256}")
    assert len(rate) <= 100
    assert rate.take("10.0.3.231") > 0  # the most recent keys are kept
