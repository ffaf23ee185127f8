"""A real network partition of one NATS node, under load, through nginx.

The three nodes run in network namespaces this test creates, joined by a bridge
(``tidings.dev.netns.NetLab``); the gateways (gateway i pinned to node i), the sidecar, nginx
and the clients reach them from the root namespace over one veth. The stream leader's link is
cut (its packets vanish: no reset, no error), held until the majority elected a new leader and
went on storing, then restored. Every client must end with exactly what the stream holds for
it, every acknowledged publish stored once; the figures (how long clients waited, how long the
stream could not store, JetStream reads) are printed (``-s``).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from tests.support.cluster import readiness
from tests.support.cluster_stack import (
    ClusterStack,
    SidecarPublisher,
    alive,
    cluster_stack,
    connections,
)
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.partition import network_lab
from tests.support.waiting import until
from tidings.client import Backoff
from tidings.dev.netns import NetLab, lab_cluster

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.usefixtures("collect_leftovers"),
    pytest.mark.slow,
]

Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)
TENANTS = tuple(f"t{i}" for i in range(6))
CLIENTS = 90
RATE = 30.0  # notifications per second through the sidecar


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    with network_lab(3) as lab:
        yield lab


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def test_a_partitioned_leader_node_loses_nothing_for_any_client(
    tmp_path: Path, token: Mint, netlab: NetLab
) -> None:
    cluster = lab_cluster(netlab, tmp_path / "nats")
    async with cluster_stack(tmp_path, gateways=3, cluster=cluster, pinned=True) as stack:
        started = stack.pids()
        nc = await nats.connect(
            cluster.urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1, ping_interval=1
        )
        js = nc.jetstream(timeout=1)  # polled through the election: short tries
        reads = await JetStreamReads().start(cluster.urls)
        fl = fleet(CLIENTS, [(stack.ingress.ws_url,)], tenants=TENANTS)
        sidecar = SidecarPublisher(stack.publisher.url)
        pub: SteadyPublisher | None = None
        try:
            await fl.start(token, backoff=BACKOFF)
            await until(
                lambda: _counted(stack), what="every client counted by a gateway", timeout=10
            )
            start = int((await js.stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(sidecar, rate=RATE, run="pt", tenants=TENANTS).start()
            await pub.until(int(2 * RATE), timeout=20)

            leader = await cluster.stream_leader("TIDINGS")
            victim = stack.gateways[leader]  # pinned to the node that is cut
            victim_node = cluster.nodes[leader].name
            cut_seq = int((await js.stream_info("TIDINGS")).state.last_seq)
            reads.reset()
            cut_at = time.time()
            netlab.cut(leader)

            # The majority elects another leader and stores again; the gateway on the cut node
            # notices (pings), moves to another node and heals.
            async def new_leader() -> bool:
                info = await stream_info(js)
                return bool(
                    info and info.cluster and info.cluster.leader not in (None, victim_node)
                )

            await until(new_leader, timeout=30, interval=0.2, what="a leader on the majority")
            elected = time.time() - cut_at
            acked = len(pub.results)
            await pub.until(acked + int(2 * RATE), timeout=30)  # storing again, for a while

            async def victim_ready() -> bool:
                return (await readiness(victim))[0] == 200

            await until(victim_ready, timeout=30, what=f"{victim.name} healed on another node")
            netlab.restore(leader)
            restored_at = time.time()

            async def rejoined() -> bool:
                info = await stream_info(js)
                replicas = info.cluster.replicas if info.cluster else None
                return bool(info and replicas) and all(r.current for r in replicas or [])

            await until(rejoined, timeout=30, interval=0.2, what=f"n{leader} current again")
            rejoin = time.time() - restored_at
            await pub.until(len(pub.results) + int(2 * RATE), timeout=30)
            published = await pub.stop()

            # Every acknowledged publish is stored exactly once (the sidecar retried the ones
            # the cut left unanswered with the same id; the stream dropped the repeats).
            stored = await read_stream(js, start=start + 1)
            ids = Counter(s.id for s in stored)
            assert [r.id for r in published if ids[r.id] != 1] == []
            assert len(stored) == len(published)

            late = await fl.wait_caught_up(stored, after=start, timeout=30)
            problems = fl.problems(stored, after=start)
            assert not late and not problems, "\n".join([*late, *problems])
            assert await connections(stack) != [0, 0, 0]

            waits = [f.wait_after_stored(stored, after=cut_seq) for f in fl.followers]
            after_cut = [s.at for s in stored if s.seq >= cut_seq]
            # Publish (the sidecar's caller) to client, for what was sent after the cut: what a
            # user waits for, including the sidecar's retries while nobody led the stream.
            e2e = [f.longest_latency(since=cut_at) for f in fl.followers]
            stall = max((b - a for a, b in itertools.pairwise(after_cut)), default=0)
            print(
                f"\npartition of n{leader} (stream leader; {victim.name} pinned to it),"
                f" {CLIENTS} clients, {RATE:.0f}/s: new leader {elected:.1f}s after the cut,"
                f" longest gap in storing {stall:.1f}s; store-to-client wait after the cut"
                f" p50 {quantile(waits, 0.5):.2f}s p99 {quantile(waits, 0.99):.2f}s"
                f" max {max(waits):.2f}s; publish-to-client p50 {quantile(e2e, 0.5):.2f}s"
                f" p99 {quantile(e2e, 0.99):.2f}s max {max(e2e):.2f}s;"
                f" n{leader} current {rejoin:.1f}s after the restore;"
                f" {len(published)} published ({sum(r.queued for r in published)} via the"
                f" outbox), 0 lost/duplicated/reordered; JetStream reads: {dict(reads.calls)},"
                f" backfills {reads.backfill_reads} (most per gateway and tenant"
                f" {reads.most_per_tenant_and_gateway()})"
            )
            # Bounded reads: a backfill per tenant (and the broadcast room) per gateway at most.
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


async def stream_info(js: JetStreamContext) -> StreamInfo | None:
    """The stream's info, or None while an election leaves nobody to answer."""
    try:
        return await js.stream_info("TIDINGS")
    except (NatsError, TimeoutError):
        return None


async def _counted(stack: ClusterStack) -> bool:
    return sum(await connections(stack)) == CLIENTS
