"""The backfill read (tidings.gateway.replay) against a real nats-server: batched direct gets,
no consumer, the window's whole reach in one read, the bound found by count, and a request
whose answer never comes sent again instead of failing the read."""

from __future__ import annotations

import time
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.support.cluster import r3_cluster
from tests.support.waiting import at_server
from tidings.gateway.replay import DirectReader, read_reach

# nats-py drops the stream writer of a server it fails over from (frozen) without closing it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

STREAM = "TIDINGS"
READS = 20


async def publish(js: JetStreamContext, count: int) -> dict[str, list[int]]:
    """``count`` messages over two tenants (2 of 3 to acme); their seqs by tenant."""
    seqs: dict[str, list[int]] = {"acme": [], "globex": []}
    for i in range(count):
        tenant = "globex" if i % 3 == 2 else "acme"
        ack = await js.publish(f"tenant.{tenant}.all.n", b'{"i":%d}' % i)
        seqs[tenant].append(ack.seq)
    return seqs


def reader(nc: NATS, name: str) -> DirectReader:
    return DirectReader(
        nc, stream=STREAM, reply=f"_INBOX.test.{name}", timeout=1.0, direct_timeout=0.3
    )


async def api_requests(nc: NATS) -> list[str]:
    seen: list[str] = []

    async def note(msg: Msg) -> None:
        seen.append(msg.subject)

    await nc.subscribe("$JS.API.>", cb=note)
    await at_server(nc)
    return seen


async def test_a_read_returns_the_tenants_messages_up_to_the_end_in_order(
    nc: NATS, js: JetStreamContext
) -> None:
    seqs = await publish(js, 30)
    upto = seqs["acme"][-3]  # what came later a live window holds already
    seen = await api_requests(nc)
    async with reader(nc, "a") as r:
        reach = await read_reach(r, subject="tenant.acme.>", upto=upto, max_count=100)
    assert reach.start == 1
    assert [m.seq for m in reach.messages] == [s for s in seqs["acme"] if s <= upto]
    assert {m.subject for m in reach.messages} == {"tenant.acme.all.n"}
    assert all(m.stamp.endswith("Z") for m in reach.messages)  # Nats-Time-Stamp, RFC 3339
    await nc.flush()
    assert seen and all(s.startswith("$JS.API.DIRECT.GET.") for s in seen), seen


async def test_beyond_the_bound_the_read_starts_where_the_newest_bound_begin(
    nc: NATS, js: JetStreamContext
) -> None:
    seqs = await publish(js, 90)  # 60 of acme
    upto = seqs["acme"][-1]
    async with reader(nc, "b") as r:
        reach = await read_reach(r, subject="tenant.acme.>", upto=upto, max_count=25)
    assert [m.seq for m in reach.messages] == seqs["acme"][-25:]
    # Complete from just after the 26th newest: nothing of acme is skipped from there.
    assert seqs["acme"][-26] < reach.start <= seqs["acme"][-25]


async def test_reads_are_whole_and_quick_while_a_replica_is_frozen(tmp_path: Path) -> None:
    """Direct gets go to every replica at random; with one frozen (SIGSTOP: its routes stay up,
    so requests routed to it vanish) each read still returns everything, in well under the
    election time: a lost request is sent again after 0.3 s."""
    async with r3_cluster(tmp_path) as (cluster, js):
        seqs = await publish(js, 60)
        leader = await cluster.stream_leader(STREAM)
        frozen, on = (leader + 1) % 3, (leader + 2) % 3
        nc = await nats.connect(cluster.urls[on], allow_reconnect=False)
        cluster.freeze(frozen)
        try:
            sends = 0
            for i in range(READS):
                began = time.monotonic()
                async with reader(nc, f"f{i}") as r:
                    reach = await read_reach(
                        r, subject="tenant.acme.>", upto=seqs["acme"][-1], max_count=100
                    )
                    sends += r.requests
                assert [m.seq for m in reach.messages] == seqs["acme"]
                assert time.monotonic() - began < 3.0
        finally:
            cluster.thaw(frozen)
            await nc.close()
        print(f"\n{READS} reads with a replica frozen: {sends} requests")
