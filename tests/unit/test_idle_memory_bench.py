"""`benchmarks/idle_memory.py` still runs against the gateway as it is: a few idle connections
to a real gateway and nats-server, a figure per connection and the sites it comes from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_idle_memory_reports_bytes_per_connection_by_site() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.idle_memory", "--connections", "100", "--json"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=240,
    )
    result = orjson.loads(out.stdout)
    assert result["connections"] == 100
    # picows keeps at least a 2 KB read buffer per connection: a smaller figure missed it
    assert 2048 < result["bytes_per_connection"] < 64 * 1024, result
    sites = [row["site"] for row in result["sites"]]
    assert any(s.startswith("picows/") for s in sites), sites
    assert any(s.startswith("tidings/gateway/") for s in sites), sites
