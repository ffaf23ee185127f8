"""A reconnect storm through nginx: every client on one gateway, that gateway killed.

All the clients (in child processes: ``tests/support/storm_clients.py``) connect through nginx
while only gw1 runs; then gw2 and gw3 start, and gw1 is killed (SIGKILL: no drain, no close
frames). Every client reconnects through nginx at once to the two others, and resumes there:
those gateways never held these tenants before, so each resume needs what was stored while the
client was away, read from JetStream. The reads must be shared (one backfill per tenant per
gateway, not one per client, counted from ``$JS.API``), and every client must end with exactly
what the stream holds for it. The figures are printed (``-s``); the full 10,000-connection run
is benchmarks/faults (scenario ``storm``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import nats
import pytest

from tests.support.cluster_stack import SidecarPublisher, alive, cluster_stack, connections
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher
from tests.support.storm_clients import StormProcess
from tests.support.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collect_leftovers")]

Mint = Callable[..., str]
TENANTS = tuple(f"t{i}" for i in range(20))
PROCESSES, PER_PROCESS = 2, 500
RATE = 20.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_a_reconnect_storm_loses_nothing_and_reads_once_per_tenant(tmp_path: Path) -> None:
    total = PROCESSES * PER_PROCESS
    async with cluster_stack(tmp_path, gateways=3) as stack:
        started = stack.pids()
        gw1, gw2, gw3 = stack.gateways
        await asyncio.gather(gw2.stop(), gw3.stop())  # every client lands on gw1
        nc = await nats.connect(stack.cluster.urls)
        js = nc.jetstream(timeout=5)
        reads = await JetStreamReads().start(stack.cluster.urls)
        sidecar = SidecarPublisher(stack.publisher.url)
        storms = [
            StormProcess(
                f"p{i}",
                url=stack.ingress.ws_url,
                nats_urls=stack.cluster.urls,
                count=PER_PROCESS,
                tenants=TENANTS,
                log=tmp_path / f"storm{i}.log",
            )
            for i in range(PROCESSES)
        ]
        pub: SteadyPublisher | None = None
        try:
            filled = await asyncio.gather(*(s.ready(timeout=180) for s in storms))
            assert (await connections(stack))[0] == total
            start = int((await js.stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(sidecar, rate=RATE, run="st", tenants=TENANTS).start()
            await pub.until(int(RATE), timeout=20)
            await asyncio.gather(gw2.started(), gw3.started())
            started += stack.pids()
            reads.reset()
            killed = time.monotonic()
            await gw1.kill()

            async def everyone_back() -> bool:
                return sum(await connections(stack)) == total

            await until(everyone_back, timeout=120, interval=0.2, what="every client back")
            back = time.monotonic() - killed
            await pub.until(len(pub.results) + int(2 * RATE), timeout=30)
            published = await pub.stop()
            for s in storms:
                s.check(start)
            reports = await asyncio.gather(*(s.report(timeout=180) for s in storms))
            problems = [p for r in reports for p in (*r["late"], *r["problems"])]
            assert problems == [], "\n".join(problems)
            assert len({r.seq for r in published}) == len(published)
            outages = [o for r in reports for o in r["outages"]]
            moved = sum(r["moved"] for r in reports)
            assert moved == total
            rss = [peak_rss_mb(g.pid) for g in (gw2, gw3) if g.pid is not None]
            print(
                f"\nreconnect storm: {total} clients over {len(TENANTS)} tenants in {PROCESSES}"
                f" processes, all on gw1 (filled in {max(filled):.1f}s), gw1 killed at {RATE:.0f}"
                f"/s: every client connected again {back:.1f}s after the kill; disconnected-to-"
                f"live p50 {quantile(outages, 0.5):.2f}s p99 {quantile(outages, 0.99):.2f}s max"
                f" {max(outages):.2f}s; {sum(r['deliveries'] for r in reports)} deliveries, 0"
                f" lost/duplicated/reordered; JetStream reads {dict(reads.calls)}, backfills"
                f" {reads.backfill_reads} (most per gateway and tenant"
                f" {reads.most_per_tenant_and_gateway()}); peak RSS gw2/gw3"
                f" {'/'.join(f'{m:.0f}' for m in rss)} MB"
            )
            # Shared reads: per gateway, a tenant's backfills do not grow with its clients
            # (here 25 per tenant on each gateway).
            assert reads.most_per_tenant_and_gateway() <= 3, reads.backfills
        finally:
            if pub is not None:
                with contextlib.suppress(Exception):
                    await pub.stop()
            for s in storms:
                s.stop()
            await sidecar.close()
            await reads.close()
            await nc.close()
    assert [pid for pid in started if alive(pid)] == []
