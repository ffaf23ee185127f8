"""A rolling upgrade behind nginx: every gateway in turn is drained (SIGTERM) and started again
on its port while nginx keeps routing and the sidecar keeps publishing.

A drained gateway's clients get ``reconnect`` and land, through nginx, on the others (a draining
gateway answers the upgrade 503, and nginx passes it to the next one); each resumes from its
last seq. Every client must end with exactly what the stream holds for it, every acknowledged
publish stored once. The figures (how long a client was without a live connection, JetStream
reads) are printed (``-s``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nats
import pytest

from tests.support.cluster_stack import (
    ClusterStack,
    SidecarPublisher,
    alive,
    cluster_stack,
    connections,
)
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tidings.client import Backoff
from tidings.client.subscriber_events import Recovered

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collect_leftovers")]

Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)
TENANTS = tuple(f"t{i}" for i in range(6))
CLIENTS = 90
RATE = 30.0
DRAIN = "2"  # seconds each gateway spreads its clients' reconnects over


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def test_a_rolling_upgrade_behind_nginx_loses_nothing_for_any_client(
    tmp_path: Path, token: Mint
) -> None:
    env = {"TIDINGS_GATEWAY_DRAIN_SECONDS": DRAIN}
    async with cluster_stack(tmp_path, gateways=3, env=env) as stack:
        started = stack.pids()
        nc = await nats.connect(stack.cluster.urls)
        js = nc.jetstream(timeout=5)
        reads = await JetStreamReads().start(stack.cluster.urls)
        fl = fleet(CLIENTS, [(stack.ingress.ws_url,)], tenants=TENANTS)
        sidecar = SidecarPublisher(stack.publisher.url)
        pub: SteadyPublisher | None = None
        try:
            await fl.start(token, backoff=BACKOFF)
            await until(lambda: _counted(stack), what="every client counted", timeout=10)
            start = int((await js.stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(sidecar, rate=RATE, run="ru", tenants=TENANTS).start()
            await pub.until(int(RATE), timeout=20)
            reads.reset()
            rolled_at = time.time()
            rolls = []
            for gw in stack.gateways:
                began = time.monotonic()
                assert await gw.stop(timeout=15) == 0  # drained, then exited cleanly
                await gw.started(timeout=20)  # the new version, on the same port
                rolls.append(time.monotonic() - began)
                await pub.until(len(pub.results) + int(RATE), timeout=30)
            started += stack.pids()  # the restarted gateways must be gone at the end too
            published = await pub.stop()

            stored = await read_stream(js, start=start + 1)
            ids = Counter(s.id for s in stored)
            assert [r.id for r in published if ids[r.id] != 1] == []
            assert len(stored) == len(published)
            late = await fl.wait_caught_up(stored, after=start, timeout=30)
            problems = fl.problems(stored, after=start)
            assert not late and not problems, "\n".join([*late, *problems])

            # Each client was moved by the drain of the gateway it was on, at least once, and
            # every move resumed without a gap (no reset: checked by problems()).
            unmoved = [f.name for f in fl.followers if not f.moved_on_request()]
            assert unmoved == [], unmoved
            resumed = sum(isinstance(e, Recovered) for f in fl.followers for e in f.events)
            assert resumed >= CLIENTS
            outages = [max(f.outages(), default=0.0) for f in fl.followers]
            e2e = [f.longest_latency(since=rolled_at) for f in fl.followers]
            not_recovered = 0.0
            for gw in stack.gateways:
                async with gw.http() as http:
                    text = (await http.get("/metrics")).text
                not_recovered += metric(
                    text, "tidings_gateway_resumes_total", outcome="not_recovered"
                )
            assert not_recovered == 0
            print(
                f"\nrolling upgrade of 3 gateways behind nginx (drain {DRAIN}s each), {CLIENTS}"
                f" clients, {RATE:.0f}/s: each gateway stopped and ready again in"
                f" {', '.join(f'{r:.1f}' for r in rolls)}s; {resumed} resumes, 0 resets;"
                f" disconnected-to-live per client p50 {quantile(outages, 0.5):.2f}s"
                f" p99 {quantile(outages, 0.99):.2f}s max {max(outages):.2f}s; publish-to-client"
                f" p99 {quantile(e2e, 0.99):.2f}s max {max(e2e):.2f}s; {len(published)}"
                f" published, 0 lost/duplicated/reordered; JetStream reads {dict(reads.calls)},"
                f" backfills {reads.backfill_reads}"
                f" (most per gateway and tenant {reads.most_per_tenant_and_gateway()})"
            )
            assert reads.most_per_tenant_and_gateway() <= 2, reads.backfills
        finally:
            if pub is not None:  # a failure midway must not leave it publishing
                with contextlib.suppress(Exception):
                    await pub.stop()
            await fl.close()
            await sidecar.close()
            await reads.close()
            await nc.close()
    assert [pid for pid in started if alive(pid)] == []


async def _counted(stack: ClusterStack) -> bool:
    return sum(await connections(stack)) == CLIENTS
