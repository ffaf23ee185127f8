"""A reconnect storm through nginx (tests/support/storm.py): 1,000 clients in two processes, all
on one gateway, that gateway killed; they land on the two others at once and resume there.

Every client must end with exactly what the stream holds for it, the JetStream reads must be
shared (one backfill per tenant per gateway, not one per client: 25 clients per tenant here),
and nothing may be left running. The figures are printed (``-s``); the full 10,000-connection
run is benchmarks/faults (scenario ``storm``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.storm import quantile, run_storm

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collect_leftovers")]

TENANTS = tuple(f"t{i}" for i in range(20))


async def test_a_reconnect_storm_loses_nothing_and_reads_once_per_tenant(tmp_path: Path) -> None:
    r = await run_storm(tmp_path, processes=2, per_process=500, tenants=TENANTS, rate=20.0)
    assert r.problems == [] and r.problem_count == 0, "\n".join(r.problems)
    assert r.stored_once and r.published >= 40
    assert r.moved == r.clients  # every client lost its gateway and came back
    print(
        f"\nreconnect storm: {r.clients} clients over {r.tenants} tenants, all on gw1 (filled"
        f" in {r.filled:.1f}s), gw1 killed at {r.rate:.0f}/s: all connected again {r.back:.1f}s"
        f" after the kill; disconnected-to-live p50 {quantile(r.outages, 0.5):.2f}s p99"
        f" {quantile(r.outages, 0.99):.2f}s max {max(r.outages):.2f}s; {r.deliveries}"
        f" deliveries, 0 lost/duplicated/reordered; JetStream {r.calls}, backfills"
        f" {r.backfills} (busiest pairs {r.top_backfills}); peak RSS gw2/gw3"
        f" {'/'.join(f'{m:.0f}' for m in r.peak_rss_mb)} MB"
    )
    # Shared reads, not one per client: each gateway holds 25 clients of each tenant and all
    # 500 of its clients want the broadcast room, resuming from points of their own in any
    # order; the first resume a cold window cannot answer reads its whole reach, and every
    # other one is answered from memory: one read per tenant (and the broadcast room) per
    # gateway (a gateway's read is a direct get; a filtered ephemeral consumer, as backfills
    # were before, would count too; the test's own unfiltered stream reads do not).
    assert r.most_backfills == 1, r.top_backfills
    assert r.backfills <= 2 * (r.tenants + 1), r.top_backfills
    assert r.left == [], f"still running after the stack stopped: {r.left}"
