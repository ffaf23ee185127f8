"""`tidings bench`'s scenarios, system names and summary, as a reader of its results relies on.

The single-user scenarios owe exactly one delivery per notification, to the addressed user;
``nats:node`` / ``socketio-node:node`` name the cross-check receiver; the summary reports the
highest passing rate even when the latency curve is not monotonic, and says what failed below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tidings.bench.config import BenchConfig
from tidings.bench.layout import USER_SLOT, Layout
from tidings.bench.main import SCENARIOS
from tidings.bench.publish import Pacer
from tidings.bench.summary import summarize
from tidings.bench.systems import NatsNative, SocketIONode, Tidings, make
from tidings.errors import BenchFailed


def test_users_presets_address_one_user_per_notification() -> None:
    for name, tenants in (("users", 100), ("users-1000", 1000), ("users-each", 10_000)):
        preset = SCENARIOS[name]
        assert (preset.clients, preset.rooms, preset.user_share) == (10_000, tenants, 1.0)
        assert preset.rates == sorted(preset.rates) and preset.rates[0] >= 1000
    layout = Layout(10_000, 10_000, 1.0)
    assert {layout.room_of(c) for c in range(10_000)} == set(range(10_000))  # a tenant each
    # every publish goes to a user, each user in turn, a gap-free index per user
    pacers = [Pacer(Layout(10, 2, 1.0), w, 2, pad=0) for w in range(2)]
    sent = [pacers[n % 2].next(step=0) for n in range(40)]
    targets = [t for t, _ in sent]
    assert {slot for slot, _ in targets} == {USER_SLOT}
    assert sorted({n for _, n in targets}) == list(range(10))
    for user in range(10):
        indexes = [data for (slot, n), data in sent if n == user]
        assert [d.split(b'"i":')[1].split(b",")[0] for d in indexes] == [b"0", b"1", b"2", b"3"]
    # owed: one delivery per user publish, whatever the tenant count
    assert Layout(10_000, 100, 1.0).expected({}, 40_000) == 40_000


def test_a_node_suffix_picks_the_peers_own_client(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"server_core": None, "gen_core": None, "nice": 0}
    nats = make("nats:node", tmp_path, **kw)
    assert isinstance(nats, NatsNative) and (nats.name, nats.receiver) == ("nats:node", "node")
    sio = make("socketio-node:node", tmp_path, **kw)
    assert isinstance(sio, SocketIONode) and sio.receiver == "node"
    plain = make("nats", tmp_path, **kw)
    assert (plain.name, plain.receiver) == ("nats", "c")
    assert isinstance(make("tidings@python", tmp_path, **kw), Tidings)
    with pytest.raises(BenchFailed, match="peers' protocols only"):
        make("tidings:node", tmp_path, **kw)
    with pytest.raises(BenchFailed, match="unknown receiver 'go'"):
        make("nats:go", tmp_path, **kw)


def row(rate: float, p99: float, lost: int = 0) -> dict[str, Any]:
    keys = [
        *("offered_per_s", "delivered_per_s", "publish_rate", "p50_ms", "p95_ms", "max_ms"),
        *("server_cpu_pct", "server_rss_mb", "clients_cpu_pct", "publishers_cpu_pct"),
        *("broker_cpu_pct", "generator_cpu_pct", "server_us_per_n", "publishers_us_per_n"),
        *("broker_us_per_n", "loadavg_1m"),
    ]
    return {
        **dict.fromkeys(keys, 1.0),
        "rate": rate,
        "delivered_per_s": rate * 10,
        "p99_ms": p99,
        "lost": lost,
        "duplicated": 0,
        "out_of_order": 0,
        "generator_saturated": False,
        "publisher_behind": False,
        "publish_errors": [],
        "deliveries_per_read": 2.0,
    }


def test_the_highest_passing_rate_counts_and_what_failed_below_it_is_named() -> None:
    cfg = BenchConfig(systems=["nats"], rates=[1000, 5000, 10000, 15000], rounds=2)
    # round 0 and 1: 5,000/s fails (median p99 55 ms), 10,000/s passes (median 45), 15,000 fails
    sweeps: list[dict[str, Any]] = [
        {
            "system": "nats",
            "round": r,
            "steps": [
                row(1000, 5),
                row(5000, 50 + 10 * r),
                row(10000, 40 + 10 * r),
                row(15000, 80),
            ],
        }
        for r in (0, 1)
    ]
    summary = summarize(sweeps, cfg)["nats"]
    assert summary["max_rate"] == 10000
    assert summary["max_deliveries_per_s"] == 100_000
    assert summary["max_rate_all_lower"] == 1000
    assert summary["failed_below"] == [5000]
    assert [r["p99_ms_runs"] for r in summary["rates"]][1] == [50, 60]
    assert summary["rates"][0]["deliveries_per_read"] == 2.0
    # a loss anywhere fails that rate whatever its latency
    sweeps[0]["steps"][2] = row(10000, 10, lost=1)
    assert summarize(sweeps, cfg)["nats"]["max_rate"] == 1000
