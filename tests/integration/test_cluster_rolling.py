"""A rolling upgrade behind nginx (tests/support/rolling.py): every gateway in turn drained
(SIGTERM) and started again on its port, while nginx keeps routing and the sidecar publishing.

Every client must be moved by a drain and resume without a gap: exactly what the stream holds
for it, every acknowledged publish stored once, no resume unrecovered, nothing left running.
The figures are printed (``-s``); the full run is benchmarks/faults (scenario ``rolling``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.rolling import run_rolling

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collect_leftovers")]

TENANTS = tuple(f"t{i}" for i in range(6))


async def test_a_rolling_upgrade_behind_nginx_loses_nothing_for_any_client(
    tmp_path: Path,
) -> None:
    row, problems = await run_rolling(tmp_path, clients=90, tenants=TENANTS, rate=30.0, drain=2.0)
    assert problems == [], "\n".join(problems)
    assert row["resumes"] >= row["clients"]
    print(f"\nrolling upgrade: {row}")
    # Bounded reads: at most a backfill per tenant per gateway and a second wave.
    assert row["most_backfills_per_gateway_tenant"] <= 2
