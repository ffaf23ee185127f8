"""A gateway on the node that leads the R3 stream loses it (kill -9): it must heal (the re-arm
retried through the stream leader election, ~5 s here, longer than one JetStream request), keep
its clients, answer a resume that arrives meanwhile without a reset, and lose nothing.

The figures a run measures (heal time, the longest publish-to-client delay) are printed; run
with ``-s`` to see them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from tests.support.cluster import pinned_gateways, r3_cluster, readiness, wait_readiness
from tests.support.load_clients import (
    Follower,
    SteadyPublisher,
    expected_seqs,
    fleet,
    read_stream,
)
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tidings.client import Backoff, Publisher
from tidings.client.subscriber_events import Recovered
from tidings.nats import stream_epoch

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
RETRIED = "a step after the NATS (re)connect failed; retrying"


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info("TIDINGS")).state.last_seq)


async def test_leader_kill_the_gateway_on_it_heals_and_nobody_loses_anything(
    tmp_path: Path, token: Mint
) -> None:
    async with r3_cluster(tmp_path) as (cluster, js):
        leader = await cluster.stream_leader("TIDINGS")
        other = (leader + 1) % 3
        # One JetStream request (2 s) is shorter than the election: the heal must be retried.
        env = {"TIDINGS_NATS_REQUEST_TIMEOUT": "2"}
        urls = [cluster.urls[leader], cluster.urls[other]]
        async with pinned_gateways(urls, tmp_path, env=env) as (gw1, gw2):
            fl = fleet(40, [(gw1.ws_url, gw2.ws_url), (gw2.ws_url, gw1.ws_url)])
            late = Follower("late", "acme", "u0", ("ops",), (), (gw1.ws_url, gw2.ws_url))
            try:
                await fl.start(token, backoff=BACKOFF)
                start = await last_seq(js)
                epoch = stream_epoch(await js.stream_info("TIDINGS"))
                pub = SteadyPublisher(
                    Publisher(js, timeout=2.0, allow_broadcast=True), rate=20, run="lk"
                ).start()
                await pub.until(20, timeout=20)
                resume_at = await last_seq(js)

                killed = time.monotonic()
                cluster.kill(leader)

                # gw1 is back on another node but not healed: not ready, and a resume that
                # arrives now waits for the heal instead of a reset.
                async def connected_not_healed() -> bool:
                    status, body = await readiness(gw1)
                    return status == 503 and body.get("nats") is True and not body["healed"]

                await until(connected_not_healed, timeout=15, what="gw1 reconnected, not healed")
                await late.start(
                    token(tenant="acme", user="u0", roles=["ops"]),
                    backoff=BACKOFF,
                    resume=(resume_at, epoch),
                    wait=False,
                )
                healed = await wait_readiness(gw1, ready=True, timeout=30) - killed

                await pub.until(len(pub.results) + 40, timeout=40)
                published = await pub.stop()
                assert len(published) == len({r.seq for r in published})

                stored = await read_stream(js, start=start + 1)
                late_ = await fl.wait_caught_up(stored, after=start, timeout=30)
                problems = fl.problems(stored, after=start)
                assert not late_ and not problems, "\n".join([*late_, *problems])
                want = expected_seqs(stored, tenant="acme", rooms=late.rooms, after=resume_at)
                assert want and await late.wait_for(want[-1], timeout=10), late.events
                assert late.problems(stored, after=resume_at) == []
                assert [e for e in late.events if isinstance(e, Recovered)], late.events
            finally:
                await fl.close()
                await late.close()

            # Healed in place: no client had to reconnect, and no resume lost anything.
            assert [f.name for f in fl.followers if len(f.welcomed) != 1] == []
            assert gw1.records() and RETRIED in [r.get("message") for r in gw1.records()]
            async with gw1.http(metrics=True) as http:
                text = (await http.get("/metrics")).text
            assert metric(text, "tidings_gateway_nats_healed") == 1
            assert metric(text, "tidings_gateway_nats_connected") == 1
            assert metric(text, "tidings_gateway_resumes_total", outcome="not_recovered") == 0
            # Nothing is stored during the election; what matters is how long after the stream
            # stored a notification a client got it (gw1's clients wait for its heal).
            groups = {
                gw.name: [f for f in fl.followers if f.welcomed[0] == gw.ws_url]
                for gw in (gw1, gw2)
            }
            worst = {
                name: max(f.wait_after_stored(stored, after=resume_at) for f in group)
                for name, group in groups.items()
            }
            print(
                f"\nleader kill: gw1 healed {healed:.1f}s after the kill; longest store-to-client"
                f" wait: gw1's clients {worst['gw1']:.2f}s, gw2's {worst['gw2']:.2f}s"
            )
            assert worst["gw1"] <= 5.0, "gw1's clients waited too long after the election"


HEAL_TIMEOUT = 3.0
SENT_AWAY = "NATS not healed in time; connections sent away"


async def test_a_gateway_that_cannot_heal_sends_its_clients_away_and_they_lose_nothing(
    tmp_path: Path, token: Mint
) -> None:
    """The stream's leader and one more node die: the survivor has no quorum, JetStream cannot
    answer, and the gateway (moved there) cannot heal. After TIDINGS_GATEWAY_HEAL_TIMEOUT it
    tells its clients to reconnect and closes them instead of holding them silent; it stays
    unready; once the nodes are back it heals, and the clients resume exactly."""
    async with r3_cluster(tmp_path) as (cluster, js):
        leader = await cluster.stream_leader("TIDINGS")
        doomed = [leader, (leader + 1) % 3]
        env = {"TIDINGS_GATEWAY_HEAL_TIMEOUT": str(HEAL_TIMEOUT)}
        async with pinned_gateways([cluster.urls[leader]], tmp_path, env=env) as (gw,):
            fl = fleet(20, [(gw.ws_url,)])
            try:
                await fl.start(token, backoff=BACKOFF)
                start = await last_seq(js)
                pub = SteadyPublisher(
                    Publisher(js, timeout=2.0, allow_broadcast=True), rate=20, run="nq"
                ).start()
                await pub.until(20, timeout=20)
                lost = time.monotonic()
                for i in doomed:
                    cluster.kill(i)

                def sent() -> list[dict[str, object]]:
                    return [r for r in gw.records() if r.get("message") == SENT_AWAY]

                await until(sent, timeout=HEAL_TIMEOUT + 15, what="the clients sent away")
                sent_away = time.monotonic() - lost
                assert [r["connections"] for r in sent()] == [20]
                status, body = await readiness(gw)
                assert status == 503 and body["healed"] is False, body

                for i in doomed:
                    cluster.restart(i)
                await cluster.wait_ready()
                await wait_readiness(gw, ready=True, timeout=40)
                await pub.until(len(pub.results) + 20, timeout=40)
                published = await pub.stop()
                assert len(published) == len({r.seq for r in published})

                await cluster.stream_leader("TIDINGS")  # the restarted nodes settled
                stored = await read_stream(js, start=start + 1)
                late = await fl.wait_caught_up(stored, after=start, timeout=30)
                problems = fl.problems(stored, after=start)
                assert not late and not problems, "\n".join([*late, *problems])
            finally:
                await fl.close()
            # Each was closed and came back with its own resume point.
            assert [f.name for f in fl.followers if len(f.welcomed) < 2] == []
            print(f"\nno quorum: clients sent away {sent_away:.1f}s after the loss")
