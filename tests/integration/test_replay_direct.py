"""The backfill read (tidings.gateway.replay) against a real nats-server: batched direct gets,
no consumer, the window's whole reach in one read, the bound found by count, and a request
whose answer never comes sent again instead of failing the read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.support.cluster import r3_cluster
from tests.support.waiting import at_server
from tidings.errors import Unavailable
from tidings.gateway.replay import DirectReader, Doubt, read_reach

# nats-py drops the stream writer of a server it fails over from (frozen) without closing it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

STREAM = "TIDINGS"
READS_FROZEN = 40
DIRECT_JOIN = 3.0  # seconds: nats-server's direct-access tick (2 s) and a margin


async def publish(js: JetStreamContext, count: int) -> dict[str, list[int]]:
    """``count`` messages over two tenants (2 of 3 to acme); their seqs by tenant."""
    seqs: dict[str, list[int]] = {"acme": [], "globex": []}
    for i in range(count):
        tenant = "globex" if i % 3 == 2 else "acme"
        ack = await js.publish(f"tenant.{tenant}.all.n", b'{"i":%d}' % i)
        seqs[tenant].append(ack.seq)
    return seqs


def reader(nc: NATS, name: str, doubt: Doubt | None = None) -> DirectReader:
    return DirectReader(
        nc,
        stream=STREAM,
        reply=f"_INBOX.test.{name}",
        timeout=1.0,
        direct_timeout=0.3,
        doubt=doubt,
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


def bursts(times: list[float], period: float) -> list[int]:
    """How many arrived together, burst by burst (a burst's copies leave back to back; bursts
    are a period apart)."""
    sizes: list[int] = []
    last = -1e9
    for t in sorted(times):
        if t - last > period / 2:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


async def test_a_lost_request_goes_again_in_more_copies_and_the_next_starts_with_two(
    nc: NATS,
) -> None:
    """The hedge's schedule, seen at the server: a request nobody answers is sent once, then
    in 2, 3, 3, 3 copies a period apart (twelve in all), and fails after eight periods; a
    read sharing the same :class:`Doubt` then starts with two copies."""
    arrived: list[float] = []

    async def silent(msg: Msg) -> None:  # a member of the group that never answers (frozen)
        arrived.append(time.monotonic())

    await nc.subscribe("$JS.API.DIRECT.GET.SILENT", cb=silent)
    await at_server(nc)
    period, doubt = 0.2, Doubt()

    def silent_reader(name: str) -> DirectReader:
        return DirectReader(
            nc,
            stream="SILENT",
            reply=f"_INBOX.test.{name}",
            timeout=1.0,
            direct_timeout=period,
            doubt=doubt,
        )

    async with silent_reader("s1") as r:
        began = time.monotonic()
        with pytest.raises(Unavailable):
            await r.batch({"seq": 1, "next_by_subj": "tenant.acme.>", "batch": 10})
        failed_after = time.monotonic() - began
    await at_server(nc)
    assert bursts(arrived, period) == [1, 2, 3, 3, 3]
    assert r.requests == 12
    assert 8 * period <= failed_after < 8 * period + 0.5
    arrived.clear()
    async with silent_reader("s2") as r2:
        with pytest.raises(Unavailable):
            await r2.batch({"seq": 1, "next_by_subj": "tenant.acme.>", "batch": 10})
    await at_server(nc)
    assert bursts(arrived, period) == [2, 3, 3, 3, 1]


async def test_reads_are_whole_and_quick_while_a_replica_is_frozen(tmp_path: Path) -> None:
    """Direct gets go to every replica at random; with one frozen (SIGSTOP: its routes stay up,
    so requests routed to it vanish) each read still returns everything, in well under the
    election time: a lost request is sent again after 0.3 s, in more copies each time, so a
    read waits out a frozen replica once and briefly (one send lost one time in three; before
    copies, four in a row were lost one read in 81 and the read failed after 2.4 s)."""
    async with r3_cluster(tmp_path) as (cluster, js):
        seqs = await publish(js, 60)
        leader = await cluster.stream_leader(STREAM)
        frozen, on = (leader + 1) % 3, (leader + 2) % 3
        # A follower joins the direct-get group on nats-server's 2 s direct-access tick once it
        # is current; frozen before that, it would never be sent a request.
        await asyncio.sleep(DIRECT_JOIN)
        nc = await nats.connect(cluster.urls[on], allow_reconnect=False)
        cluster.freeze(frozen)
        try:
            sends, took, doubt = 0, [], Doubt()  # shared by the reads, as a gateway's are
            for i in range(READS_FROZEN):
                began = time.monotonic()
                async with reader(nc, f"f{i}", doubt) as r:
                    reach = await read_reach(
                        r, subject="tenant.acme.>", upto=seqs["acme"][-1], max_count=100
                    )
                    sends += r.requests
                took.append(time.monotonic() - began)
                assert [m.seq for m in reach.messages] == seqs["acme"]
        finally:
            cluster.thaw(frozen)
            await nc.close()
        waited = sum(t >= 0.3 for t in took)
        took.sort()
        print(
            f"\n{READS_FROZEN} reads with a replica frozen: {sends} requests, {waited} read(s)"
            f" waited for a lost one; median {took[len(took) // 2]:.3f}s, longest {took[-1]:.3f}s"
        )
        # Each read is one direct get and one leader get unless a send was lost: with one in
        # three lost, none in 40 reads means the frozen replica was never asked (the test would
        # show nothing): a chance of (2/3)**40, about 1e-7.
        assert sends > 2 * READS_FROZEN, "no request was ever routed to the frozen replica"
        # Five periods unanswered (1 + 2 + 3 + 3 + 3 copies, each lost one time in three) is
        # about 2e-6 per read; one copy at a time, four lost in a row was 1 in 81.
        assert took[-1] < 5 * 0.3 + 0.5
