"""A frozen NATS node (SIGSTOP, longer than the election timeout): its TCP connections stay open,
so only the client's own pings can tell. With TIDINGS_NATS_PING_INTERVAL and
TIDINGS_NATS_MAX_OUTSTANDING_PINGS at their defaults a gateway on it moves to another node within
seconds (nats-py's defaults: minutes), heals, and its clients receive again with nothing lost.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import nats
import pytest

from tests.support.cluster import logged_at, pinned_gateways, r3_cluster, wait_readiness
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.waiting import until
from tidings.client import Backoff, Publisher
from tidings.settings import NatsSettings

# nats-py drops the stream writer of a server it fails over from (killed, frozen) without
# closing it; Python reports that at garbage collection, in whatever test runs then. It is the
# client library's socket, not ours, and only these tests kill or freeze servers on purpose.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.usefixtures("collect_leftovers"),
]


Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)
FREEZE = 9.0  # seconds: longer than an election (~5 s measured) plus the notice
LIVE_WITHIN = 5.0  # after the gateway noticed, its clients receive again within this


@pytest.mark.parametrize("node", ["follower", "leader"])
async def test_a_frozen_node_is_left_within_seconds_and_nothing_is_lost(
    node: str, tmp_path: Path, token: Mint
) -> None:
    """``follower``: the stream stays writable, so the gateway's clients must receive again
    within LIVE_WITHIN of the gateway noticing. ``leader``: nothing is stored until the other
    two elect a new leader (they wait out their own election timeout first), so the bound is on
    how long after the stream stored a notification the gateway's clients get it."""
    defaults = NatsSettings()
    notice_bound = (defaults.max_outstanding_pings + 2) * defaults.ping_interval
    async with r3_cluster(tmp_path) as (cluster, js):
        leader = await cluster.stream_leader("TIDINGS")
        frozen = leader if node == "leader" else (leader + 1) % 3
        other = (frozen + 1) % 3
        urls = [cluster.urls[frozen], cluster.urls[other]]
        async with pinned_gateways(urls, tmp_path) as (gw1, gw2):
            fl = fleet(40, [(gw1.ws_url, gw2.ws_url), (gw2.ws_url, gw1.ws_url)])
            # The publisher is on a node that stays up: what is measured is how soon the
            # gateway's clients receive what the stream stores, not how soon a publisher on the
            # frozen node notices (seen: nothing stored for 6.7 s after gw1 noticed).
            pnc = await nats.connect(cluster.urls[other], ping_interval=1)
            try:
                await fl.start(token, backoff=BACKOFF)
                start = int((await js.stream_info("TIDINGS")).state.last_seq)
                pub = SteadyPublisher(
                    Publisher(pnc.jetstream(timeout=2.0), timeout=2.0, allow_broadcast=True),
                    rate=20,
                    run="fz",
                ).start()
                await pub.until(20, timeout=20)
                before = len(pub.results)

                froze_at = time.time()
                cluster.freeze(frozen)
                try:
                    await until(
                        lambda: logged_at(gw1, "nats disconnected"),
                        timeout=notice_bound + 2,
                        what="gw1 noticing its frozen server",
                    )
                    noticed = logged_at(gw1, "nats disconnected")[0] - froze_at
                    await wait_readiness(gw1, ready=True, timeout=LIVE_WITHIN + 10)
                    healed = time.time()  # /readyz 200 again: the heal completed
                    await pub.until(before + 40, timeout=30)
                    left = FREEZE - (time.time() - froze_at)
                    if left > 0:  # frozen for the whole period, however quick the rest was
                        await until(
                            lambda: time.time() - froze_at >= FREEZE,
                            timeout=left + 1,
                            what="the freeze period",
                        )
                finally:
                    cluster.thaw(frozen)
                await pub.until(len(pub.results) + 20, timeout=30)
                published = await pub.stop()
                assert len(published) == len({r.seq for r in published})

                stored = await read_stream(js, start=start + 1)
                late = await fl.wait_caught_up(stored, after=start, timeout=30)
                problems = fl.problems(stored, after=start)
                assert not late and not problems, "\n".join([*late, *problems])
            finally:
                await fl.close()
                await pnc.close()

            on_gw1 = [f for f in fl.followers if f.welcomed[0] == gw1.ws_url]
            notice_at = froze_at + noticed
            # Live again: the first notification stored after the gateway noticed, received.
            live_again = []
            for f in on_gw1:
                after_notice = [
                    (seq, at)
                    for seq, at in zip(f.seqs, f.received_at, strict=True)
                    if at > notice_at
                ]
                assert after_notice, f"{f.name} received nothing after the notice"
                live_again.append(after_notice[0][1] - notice_at)
            worst_wait = max(f.wait_after_stored(stored, after=start) for f in on_gw1)
            print(
                f"\nfreeze of a stream {node}: gw1 noticed after {noticed:.1f}s (bound"
                f" {notice_bound:.0f}s), healed {healed - notice_at:.1f}s after noticing;"
                f" its clients live again {max(live_again):.1f}s after the notice; longest"
                f" store-to-client wait {worst_wait:.2f}s"
            )
            assert noticed <= notice_bound
            if node == "follower":
                assert max(live_again) <= LIVE_WITHIN
            assert worst_wait <= LIVE_WITHIN
