"""The steady load every fault scenario runs under, and the row each one reports.

:func:`loaded_stack` starts the production shape (:func:`cluster_stack`), connects a fleet of
SDK clients through nginx (user, role and named rooms over the given tenants) and publishes at a
fixed rate, alternately through the sidecar (HTTP) and the SDK (``tidings.client.Publisher``,
straight to JetStream), each notification always through the same one so a retry keeps its
``Nats-Msg-Id``. The scenario attacks the stack; :meth:`Load.finish` stops the publisher, reads
from JetStream what was stored, and fills the report row: lost, duplicated, reordered per client
(:func:`tally`), acknowledged against stored, recovery, JetStream reads, peak gateway RSS.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from tests.support.cluster import wait_readiness
from tests.support.cluster_stack import (
    ClusterStack,
    SidecarPublisher,
    alive,
    cluster_stack,
    connections,
)
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import (
    Fleet,
    Follower,
    Publishes,
    SteadyPublisher,
    Stored,
    expected_seqs,
    fleet,
    read_stream,
)
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until
from tidings.auth import mint_token
from tidings.client import Backoff, Publisher
from tidings.dev.cluster import NatsCluster
from tidings.publishing import PublishResult


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process used so far (``/proc/<pid>/stat``), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BACKOFF = Backoff(base=0.2, max=1.0)


def mint(tenant: str = "acme", user: str = "alice", **claims: object) -> str:
    return mint_token(JWT_SECRET, tenant=tenant, user=user, **claims)  # type: ignore[arg-type]


class Alternating:
    """Publishes notification ``i`` through ``pubs[i % len(pubs)]`` (``i`` from its id, so a
    retry of the same notification goes the same way); counts what each path acknowledged."""

    def __init__(self, **pubs: Publishes) -> None:
        self.names = list(pubs)
        self.pubs = list(pubs.values())
        self.acknowledged: Counter[str] = Counter()

    async def publish(self, body: dict[str, Any]) -> PublishResult:
        i = int(str(body["id"]).rsplit("-", 1)[-1])
        result = await self.pubs[i % len(self.pubs)].publish(body)
        self.acknowledged[self.names[i % len(self.pubs)]] += 1
        return result


@dataclass(slots=True)
class Tally:
    """What the clients saw against what the stream holds for them, summed over clients."""

    lost: int = 0  # expected, never yielded
    duplicated: int = 0  # yielded twice, or sent twice by a gateway (the SDK dropped it)
    reordered: int = 0  # a seq yielded after a larger one
    unexpected: int = 0  # yielded though not addressed to the client
    resets: int = 0
    clients_hit: int = 0  # clients with any of the above

    def add(self, other: Tally) -> None:
        for name in ("lost", "duplicated", "reordered", "unexpected", "resets", "clients_hit"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "unexpected": self.unexpected,
            "resets": self.resets,
            "clients_hit": self.clients_hit,
        }


def tally(followers: Iterable[Follower], stored: Sequence[Stored], *, after: int) -> Tally:
    """Count, per client, what :meth:`Follower.problems` names."""
    total = Tally()
    for f in followers:
        want = set(expected_seqs(stored, tenant=f.tenant, rooms=f.rooms, after=after))
        got = [s for s in f.seqs if s > after]
        one = Tally(
            lost=len(want - set(got)),
            duplicated=len(got) - len(set(got)) + (f.sub.stats.duplicates if f.sub else 0),
            reordered=sum(b < a for a, b in itertools.pairwise(got)),
            unexpected=len(set(got) - want),
            resets=len(f.resets),
        )
        one.clients_hit = int(any(one.as_dict().values()))
        total.add(one)
    return total


async def _stream_info(js: JetStreamContext) -> StreamInfo | None:
    """The stream's info, or None while an election leaves nobody to answer."""
    try:
        return await js.stream_info("TIDINGS")
    except (NatsError, TimeoutError):
        return None


async def new_leader(js: JetStreamContext, *, other_than: str, timeout: float = 60) -> float:
    """Until the stream has a leader other than the node ``other_than``; the wall time seen."""

    async def elected() -> bool:
        info = await _stream_info(js)
        return bool(info and info.cluster and info.cluster.leader not in (None, other_than))

    await until(elected, timeout=timeout, interval=0.2, what=f"a leader other than {other_than}")
    return time.time()


async def replicas_current(js: JetStreamContext, *, timeout: float = 60) -> float:
    """Until every replica of the stream is current; the wall time seen."""

    async def current() -> bool:
        info = await _stream_info(js)
        if info is None or info.cluster is None or not info.cluster.replicas:
            return False
        return all(r.current for r in info.cluster.replicas)

    await until(current, timeout=timeout, interval=0.2, what="every replica current")
    return time.time()


RECOVERY = "stored→client"  # per client: the longest a stored notification waited for it


def spread(values: list[float]) -> dict[str, float]:
    """p50 / p99 / max, rounded, as the report's recovery columns."""
    return {
        "recovery_p50": round(quantile(values, 0.5), 2),
        "recovery_p99": round(quantile(values, 0.99), 2),
        "recovery_max": round(max(values, default=0.0), 2),
    }


@dataclass(slots=True)
class Load:
    """A running stack under load; the scenario attacks ``stack`` between start and finish."""

    scenario: str
    stack: ClusterStack
    nc: NATS
    reads: JetStreamReads
    fleet: Fleet
    paths: Alternating
    pub: SteadyPublisher
    start: int  # the stream's last seq before the load began
    tenants: int
    rate: float
    peak: dict[str, float] = field(default_factory=dict)  # gateway name -> peak RSS, MB
    started: set[int] = field(default_factory=set)  # every PID the stack ran
    left: list[int] = field(default_factory=list)  # of those, still running after the stack
    store_waits: list[float] = field(default_factory=list)  # per client, after finish()
    began: tuple[float, float] = (0.0, 0.0)  # (wall, this process's CPU) when the fault began

    def fault_begins(self) -> None:
        """Count JetStream reads from here, and note the time: the row says how busy this
        process (every client, the publishers) was from here to :meth:`finish` — near 1.0 the
        load generator, not the stack, was the bottleneck."""
        self.reads.reset()
        self.began = (time.monotonic(), time.process_time())

    def track(self) -> None:
        """Note the stack's processes and each gateway's peak RSS so far (call before a
        gateway is stopped or killed: its peak goes with it)."""
        self.started.update(self.stack.pids())
        for gw in self.stack.gateways:
            if gw.pid is not None and alive(gw.pid):
                with contextlib.suppress(OSError):
                    self.peak[gw.name] = max(self.peak.get(gw.name, 0.0), peak_rss_mb(gw.pid))

    def js(self, timeout: float = 5.0) -> JetStreamContext:
        return self.nc.jetstream(timeout=timeout)

    async def everyone_connected(self, *, timeout: float) -> None:
        """Until the gateways together count every client (their own /metrics)."""
        clients = len(self.fleet.followers)

        async def counted() -> bool:
            try:
                return sum(await connections(self.stack)) == clients
            except httpx.TransportError:  # a gateway busy or restarting: ask again
                return False

        await until(counted, timeout=timeout, interval=0.2, what=f"all {clients} connected")

    async def publish_more(self, seconds: float, *, timeout: float = 60.0) -> None:
        """Until ``seconds`` more of the rate were acknowledged."""
        await self.pub.until(len(self.pub.results) + int(seconds * self.rate), timeout=timeout)

    async def finish(self, row: dict[str, Any], *, since: float) -> list[str]:
        """Stop publishing, compare every client with the stream, fill ``row``; the problems
        (empty when every client's view is exact and every acknowledged publish is stored once).
        ``since``: wall time of the fault (publish→client waits are measured after it)."""
        self.track()
        wall, cpu = time.monotonic() - self.began[0], time.process_time() - self.began[1]
        published = await self.pub.stop()
        stored = await read_stream(self.js(10), start=self.start + 1, timeout=60)
        ids = Counter(s.id for s in stored)
        problems = [f"{r.id} stored {ids[r.id]} times" for r in published if ids[r.id] != 1]
        if len(stored) != len(published):
            problems.append(f"{len(stored)} stored for {len(published)} acknowledged")
        problems += await self.fleet.wait_caught_up(stored, after=self.start, timeout=60)
        problems += self.fleet.problems(stored, after=self.start)
        followers = self.fleet.followers
        counts = tally(followers, stored, after=self.start)
        e2e = [f.longest_latency(since=since) for f in followers]
        storing = [s.at for s in stored if s.at >= since - 1]
        waits = [f.wait_after_stored(stored, after=self.start) for f in followers]
        self.store_waits = waits
        outages = [max(f.outages(), default=0.0) for f in followers]
        row.update(
            scenario=self.scenario,
            clients=len(followers),
            tenants=self.tenants,
            rate=self.rate,
            **counts.as_dict(),
            acknowledged=len(published),
            acknowledged_by=dict(self.paths.acknowledged),
            via_outbox=sum(r.queued for r in published),
            stored=len(stored),
            stored_once=len(stored) == len(published) and all(ids[r.id] == 1 for r in published),
            publish_to_client_p99=round(quantile(e2e, 0.99), 2),
            publish_to_client_max=round(max(e2e, default=0.0), 2),
            store_to_client_max=round(max(waits, default=0.0), 2),
            longest_storing_gap_s=round(
                max((b - a for a, b in itertools.pairwise(storing)), default=0.0), 1
            ),
            disconnected_clients=sum(bool(f.outages()) for f in followers),
            outage_max=round(max(outages, default=0.0), 2),
            jetstream_calls=dict(self.reads.calls),
            backfills=self.reads.backfill_reads,
            most_backfills_per_gateway_tenant=self.reads.most_per_tenant_and_gateway(),
            peak_rss_mb=[round(self.peak[k]) for k in sorted(self.peak)],
            lost_or_duplicated=len(problems),
            load_generator_cpu=round(cpu / wall, 2) if self.began[0] else None,
        )
        return problems


@asynccontextmanager
async def loaded_stack(
    directory: Path,
    *,
    scenario: str,
    clients: int,
    tenants: Sequence[str],
    rate: float,
    env: dict[str, str] | None = None,
    cluster: NatsCluster | None = None,
    pinned: bool = False,
) -> AsyncIterator[Load]:
    """The stack (see :func:`cluster_stack`), every client connected through nginx and counted,
    and the publisher running at ``rate`` with at least two seconds of it acknowledged.

    On exit everything is stopped; ``Load.left`` lists what still runs (should be empty).
    """
    async with cluster_stack(
        directory, gateways=3, env=env, cluster=cluster, pinned=pinned, start_timeout=60
    ) as stack:
        nc = await nats.connect(
            stack.cluster.urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1, ping_interval=1
        )
        reads = await JetStreamReads().start(stack.cluster.urls)
        fl = fleet(clients, [(stack.ingress.ws_url,)], tenants=tenants)
        sidecar = SidecarPublisher(stack.publisher.url)
        sdk = Publisher(nc.jetstream(timeout=2.0), timeout=2.0, allow_broadcast=True)
        paths = Alternating(sidecar=sidecar, sdk=sdk)
        pub = SteadyPublisher(paths, rate=rate, run=scenario[:2], tenants=tenants)
        load: Load | None = None
        try:
            await fl.start(mint, backoff=BACKOFF, concurrency=50, timeout=max(30, clients / 20))
            start = int((await nc.jetstream(timeout=5).stream_info("TIDINGS")).state.last_seq)
            load = Load(scenario, stack, nc, reads, fl, paths, pub, start, len(tenants), rate)
            await load.everyone_connected(timeout=60)
            pub.start()
            await load.publish_more(2, timeout=30)
            load.track()
            load.fault_begins()
            yield load
        finally:
            with contextlib.suppress(Exception):  # a failure midway must not leave it publishing
                await pub.stop()
            await fl.close()
            await sidecar.close()
            await reads.close()
            await nc.close()
            if load is not None:
                load.track()
    if load is not None:
        load.left = sorted(pid for pid in load.started if alive(pid))


def tenant_names(count: int) -> tuple[str, ...]:
    return tuple(f"t{i}" for i in range(count))


async def node_fault(
    load: Load,
    *,
    hit: Callable[[int], object],
    undo: Callable[[int], object],
    hold: float = 0.0,
) -> tuple[dict[str, Any], list[str]]:
    """A fault of the stream leader's node under load (the stack ``pinned``: gateway i on node
    i): ``hit(leader)``; wait for a new leader and for the gateway on that node to be ready
    again elsewhere; two more seconds of publishing; at least ``hold`` seconds after the hit
    (the fault's length, not a wait for an event); ``undo(leader)``; wait until every replica
    is current; finish. The row's recovery is stored→client (the clients keep their sockets)."""
    row: dict[str, Any] = {}
    cluster = load.stack.cluster
    leader = await cluster.stream_leader("TIDINGS")
    victim, node = load.stack.gateways[leader], cluster.nodes[leader].name
    load.fault_begins()
    hit_at = time.time()
    hit(leader)
    try:
        elected = await new_leader(load.js(1), other_than=node) - hit_at
        await wait_readiness(victim, ready=True, timeout=60)
        healed = time.time() - hit_at
        await load.publish_more(2)

        def held() -> bool:
            return time.time() - hit_at >= hold

        await until(held, timeout=hold + 60, what="the fault's length")
    finally:
        undo(leader)
    undone_at = time.time()
    rejoin = await replicas_current(load.js(1)) - undone_at
    await load.publish_more(2)
    problems = await load.finish(row, since=hit_at)
    row.update(
        spread(load.store_waits),
        recovery_is=RECOVERY,
        fault_detail=f"{node} for {undone_at - hit_at:.1f} s, {victim.name} pinned to it",
        new_leader_s=round(elected, 1),
        gateway_healed_s=round(healed, 1),
        rejoin_s=round(rejoin, 1),
    )
    return row, problems
