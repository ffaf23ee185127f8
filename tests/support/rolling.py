"""The rolling upgrade, as one function the test suite (reduced) and benchmarks/faults both run.

Every gateway in turn is drained (SIGTERM) and started again on its port while nginx keeps
routing and the sidecar keeps publishing; a drained gateway's clients get ``reconnect`` and land,
through nginx, on the others (a draining gateway answers the upgrade 503, nginx passes it on).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats

from tests.support.cluster_stack import SidecarPublisher, alive, cluster_stack, connections
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.publisher_process import metric
from tests.support.storm import peak_rss_mb, quantile
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until
from tidings.auth import mint_token
from tidings.client import Backoff
from tidings.client.subscriber_events import Recovered

BACKOFF = Backoff(base=0.2, max=1.0)


def mint(tenant: str = "acme", user: str = "alice", **claims: object) -> str:
    return mint_token(JWT_SECRET, tenant=tenant, user=user, **claims)  # type: ignore[arg-type]


async def run_rolling(
    directory: Path, *, clients: int, tenants: tuple[str, ...], rate: float, drain: float
) -> tuple[dict[str, Any], list[str]]:
    """(the report row, what went wrong: empty when every client's view is exact)."""
    env = {"TIDINGS_GATEWAY_DRAIN_SECONDS": str(drain)}
    problems: list[str] = []
    row: dict[str, Any] = {"scenario": "rolling", "clients": clients, "rate": rate}
    async with cluster_stack(directory, gateways=3, env=env) as stack:
        started = stack.pids()
        nc = await nats.connect(stack.cluster.urls)
        js = nc.jetstream(timeout=5)
        reads = await JetStreamReads().start(stack.cluster.urls)
        fl = fleet(clients, [(stack.ingress.ws_url,)], tenants=tenants)
        sidecar = SidecarPublisher(stack.publisher.url)
        pub: SteadyPublisher | None = None
        peak: dict[str, float] = {}
        try:
            await fl.start(mint, backoff=BACKOFF, concurrency=50, timeout=max(30, clients / 20))

            async def counted() -> bool:
                return sum(await connections(stack)) == clients

            await until(counted, what="every client counted", timeout=60)
            start = int((await js.stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(sidecar, rate=rate, run="ru", tenants=tenants).start()
            await pub.until(int(rate), timeout=20)
            reads.reset()
            rolled_at = time.time()
            rolls = []
            for gw in stack.gateways:
                began = time.monotonic()
                if gw.pid is not None:
                    peak[gw.name] = max(peak.get(gw.name, 0.0), peak_rss_mb(gw.pid))
                code = await gw.stop(timeout=drain + 15)
                if code != 0:
                    problems.append(f"{gw.name} exited with {code} after its drain")
                await gw.started(timeout=30)
                rolls.append(round(time.monotonic() - began, 1))
                await pub.until(len(pub.results) + int(rate), timeout=60)
            started += stack.pids()
            published = await pub.stop()

            stored = await read_stream(js, start=start + 1, timeout=60)
            ids = Counter(s.id for s in stored)
            problems += [f"{r.id} stored {ids[r.id]} times" for r in published if ids[r.id] != 1]
            if len(stored) != len(published):
                problems.append(f"{len(stored)} stored for {len(published)} acknowledged")
            problems += await fl.wait_caught_up(stored, after=start, timeout=60)
            problems += fl.problems(stored, after=start)
            problems += [f"{f.name} never moved" for f in fl.followers if not f.moved_on_request()]
            not_recovered = 0.0
            for gw in stack.gateways:
                async with gw.http(metrics=True) as http:
                    text = (await http.get("/metrics")).text
                not_recovered += metric(
                    text, "tidings_gateway_resumes_total", outcome="not_recovered"
                )
            if not_recovered:
                problems.append(f"{not_recovered:.0f} resumes not recovered")
            outages = [max(f.outages(), default=0.0) for f in fl.followers]
            e2e = [f.longest_latency(since=rolled_at) for f in fl.followers]
            row.update(
                tenants=len(tenants),
                drain_s=drain,
                lost_or_duplicated=len(problems),
                stored_once=not any("stored" in p for p in problems),
                published=len(published),
                resumes=sum(isinstance(e, Recovered) for f in fl.followers for e in f.events),
                recovery_p50=round(quantile(outages, 0.5), 2),
                recovery_p99=round(quantile(outages, 0.99), 2),
                recovery_max=round(max(outages, default=0.0), 2),
                publish_to_client_p99=round(quantile(e2e, 0.99), 2),
                publish_to_client_max=round(max(e2e, default=0.0), 2),
                roll_s=rolls,
                jetstream_calls=dict(reads.calls),
                backfills=reads.backfill_reads,
                most_backfills_per_gateway_tenant=reads.most_per_tenant_and_gateway(),
                peak_rss_mb=[round(v) for v in peak.values()],
            )
        finally:
            if pub is not None:  # a failure midway must not leave it publishing
                with contextlib.suppress(Exception):
                    await pub.stop()
            await fl.close()
            await sidecar.close()
            await reads.close()
            await nc.close()
    left = [pid for pid in started if alive(pid)]
    if left:
        problems.append(f"still running after the stack stopped: {left}")
    return row, problems
