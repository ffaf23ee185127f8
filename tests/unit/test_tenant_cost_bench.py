"""`benchmarks/tenant_cost.py` still runs against the gateway as it is: both modes with tiny
counts against a real nats-server (the benchmark starts its own), every figure positive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]


def bench(*argv: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.tenant_cost", *argv, "--json"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=240,
    )
    return orjson.loads(out.stdout)


def test_memory_mode_reports_bytes_per_connection_and_per_tenant() -> None:
    result = bench("memory", "--connections", "40", "--spreads", "10,1", "--top", "5")
    assert [r["tenants"] for r in result["spreads"]] == [4, 40]
    for row in result["spreads"]:
        assert row["bytes_per_connection"] > 0, row
        assert row["sites"], row
        assert all(s["bytes_per_connection"] > 0 for s in row["sites"]), row
    assert result["bytes_per_tenant"] > 0, result
    # a tenant costs its live subscription: nats-py's Subscription is among what it adds
    assert any("nats/" in s["site"] for s in result["sites_per_tenant"]), result


def test_cpu_mode_reports_us_per_notification_for_each_spread() -> None:
    result = bench(
        "cpu", "--connections", "20", "--spreads", "10,1", "--messages", "200", "--rate", "2000",
        "--rounds", "1",
    )  # fmt: skip
    assert [r["tenants"] for r in result["spreads"]] == [2, 20]
    assert all(r["us_per_notification"] > 0 for r in result["spreads"]), result
