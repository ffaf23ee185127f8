"""A network lab for partition tests (``tidings.dev.netns``), checked clean afterwards.

The lab needs root and iproute2 (scripts/test installs it; CI runs as root). Without them a test
is skipped with the reason on a developer's machine and fails under CI (``CI`` set), as
``tests/support/shared.py`` does for its files: CI never skips it silently.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from tests.support.cluster import readiness
from tests.support.cluster_stack import SidecarPublisher, alive, cluster_stack, connections
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.rolling import BACKOFF, mint
from tests.support.storm import peak_rss_mb, quantile
from tests.support.waiting import until
from tidings.dev.netns import NetLab, lab_cluster, namespaces, unavailable_reason


def require_namespaces() -> None:
    """Skip (developer machine) or fail (CI) when network namespaces cannot be made here."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the partition tests: {reason}")
        pytest.skip(f"partition tests: {reason}")


@contextmanager
def network_lab(nodes: int = 3) -> Iterator[NetLab]:
    """A started :class:`NetLab`; on exit it is closed, and the test fails if one of its
    namespaces or one process that ran in them is left."""
    require_namespaces()
    lab = NetLab(nodes)
    ran: list[int] = []
    try:
        lab.start()
        yield lab
    finally:
        ran = lab.pids()
        lab.close()
    left = [n for n in namespaces(lab.prefix) if n.startswith(lab.run)]
    assert left == [], f"namespaces left behind: {left}"
    assert [p for p in ran if alive(p)] == [], "processes left in the lab's namespaces"


async def _stream_info(js: JetStreamContext) -> StreamInfo | None:
    """The stream's info, or None while an election leaves nobody to answer."""
    try:
        return await js.stream_info("TIDINGS")
    except (NatsError, TimeoutError):
        return None


async def run_partition(
    directory: Path, lab: NetLab, *, clients: int, tenants: tuple[str, ...], rate: float
) -> tuple[dict[str, Any], list[str]]:
    """The stream leader's node cut off under load, then restored: (report row, problems).

    The nodes run in ``lab``'s namespaces; gateway i is pinned to node i, so the gateway on the
    cut node must notice (pings), move to another node and heal. The cut is held until the
    majority elected a new leader, stored for a while, and that gateway is ready again.
    """
    cluster = lab_cluster(lab, directory / "nats")
    problems: list[str] = []
    row: dict[str, Any] = {"scenario": "partition", "clients": clients, "rate": rate}
    async with cluster_stack(directory, gateways=3, cluster=cluster, pinned=True) as stack:
        started = stack.pids()
        nc = await nats.connect(
            cluster.urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1, ping_interval=1
        )
        js = nc.jetstream(timeout=1)  # polled through the election: short tries
        reads = await JetStreamReads().start(cluster.urls)
        fl = fleet(clients, [(stack.ingress.ws_url,)], tenants=tenants)
        sidecar = SidecarPublisher(stack.publisher.url)
        pub: SteadyPublisher | None = None
        try:
            await fl.start(mint, backoff=BACKOFF, concurrency=50, timeout=max(30, clients / 20))

            async def counted() -> bool:
                return sum(await connections(stack)) == clients

            await until(counted, what="every client counted by a gateway", timeout=60)
            start = int((await nc.jetstream(timeout=5).stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(sidecar, rate=rate, run="pt", tenants=tenants).start()
            await pub.until(int(2 * rate), timeout=20)

            leader = await cluster.stream_leader("TIDINGS")
            victim, victim_node = stack.gateways[leader], cluster.nodes[leader].name
            reads.reset()
            cut_at = time.time()
            lab.cut(leader)

            async def new_leader() -> bool:
                info = await _stream_info(js)
                return bool(
                    info and info.cluster and info.cluster.leader not in (None, victim_node)
                )

            await until(new_leader, timeout=60, interval=0.2, what="a leader on the majority")
            elected = time.time() - cut_at
            await pub.until(len(pub.results) + int(2 * rate), timeout=60)

            async def victim_ready() -> bool:
                return (await readiness(victim))[0] == 200

            await until(victim_ready, timeout=60, what=f"{victim.name} healed on another node")
            held = time.time() - cut_at
            lab.restore(leader)
            restored_at = time.time()

            async def rejoined() -> bool:
                info = await _stream_info(js)
                if info is None or info.cluster is None or not info.cluster.replicas:
                    return False
                return all(r.current for r in info.cluster.replicas)

            await until(rejoined, timeout=60, interval=0.2, what=f"{victim_node} current again")
            rejoin = time.time() - restored_at
            await pub.until(len(pub.results) + int(2 * rate), timeout=60)
            published = await pub.stop()

            # Every acknowledged publish stored exactly once (the sidecar retried what the cut
            # left unanswered with the same id; the stream dropped the repeats).
            stored = await read_stream(nc.jetstream(timeout=10), start=start + 1, timeout=60)
            ids = Counter(s.id for s in stored)
            problems += [f"{r.id} stored {ids[r.id]} times" for r in published if ids[r.id] != 1]
            if len(stored) != len(published):
                problems.append(f"{len(stored)} stored for {len(published)} acknowledged")
            problems += await fl.wait_caught_up(stored, after=start, timeout=60)
            problems += fl.problems(stored, after=start)
            after = [s.at for s in stored if s.at >= cut_at - 1]
            e2e = [f.longest_latency(since=cut_at) for f in fl.followers]
            waits = [f.wait_after_stored(stored, after=0) for f in fl.followers]
            row.update(
                tenants=len(tenants),
                cut=f"{victim_node} (stream leader; {victim.name} pinned to it)",
                lost_or_duplicated=len(problems),
                stored_once=not any("stored" in p for p in problems),
                published=len(published),
                via_outbox=sum(r.queued for r in published),
                new_leader_s=round(elected, 1),
                longest_storing_gap_s=round(
                    max((b - a for a, b in itertools.pairwise(after)), default=0.0), 1
                ),
                held_s=round(held, 1),
                rejoin_s=round(rejoin, 1),
                recovery_p50=round(quantile(e2e, 0.5), 2),
                recovery_p99=round(quantile(e2e, 0.99), 2),
                recovery_max=round(max(e2e, default=0.0), 2),
                store_to_client_max=round(max(waits, default=0.0), 2),
                jetstream_calls=dict(reads.calls),
                backfills=reads.backfill_reads,
                most_backfills_per_gateway_tenant=reads.most_per_tenant_and_gateway(),
                peak_rss_mb=[round(peak_rss_mb(g.pid)) for g in stack.gateways if g.pid],
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
