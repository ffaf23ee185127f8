"""Faults, with real parts: gateway processes killed and drained, nats-server restarted, a client
that stops reading. Every client is a real ``tidings.client`` subscriber (auto-reconnect, resume)
or a raw WebSocket, and every check ends the same way: each client holds exactly what the stream
holds for its rooms, in order, nothing twice, no ``reset`` (tests/support/load_clients.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tests.support.load_clients import Fleet, SteadyPublisher, expected_seqs, fleet, read_stream
from tests.support.publisher_process import metric
from tidings.client import Backoff, Publisher
from tidings.client.subscriber_events import Recovered
from tidings.dev.embedded import EmbeddedNats
from tidings.protocol import SUBPROTOCOL

Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)  # reconnect within a second, jittered


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info("TIDINGS")).state.last_seq)


@asynccontextmanager
async def running(fl: Fleet, mint: Mint) -> AsyncIterator[Fleet]:
    try:
        await fl.start(mint, backoff=BACKOFF)
        yield fl
    finally:
        await fl.close()


async def settle(fl: Fleet, js: JetStreamContext, *, after: int, timeout: float = 30.0) -> None:
    """Every client caught up with the stream, and its view is exact."""
    stored = await read_stream(js, start=after + 1)
    assert stored, "nothing was published"
    late = await fl.wait_caught_up(stored, after=after, timeout=timeout)
    problems = fl.problems(stored, after=after)
    assert not late and not problems, "\n".join([*late, *problems])


# --- 2. kill -9 --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_every_client_resumes_on_the_survivor_exactly(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path, token: Mint
) -> None:
    async with gateway_processes(2, nats_server.url, tmp_path) as (gw1, gw2):
        orders = [(gw1.ws_url, gw2.ws_url), (gw2.ws_url, gw1.ws_url)]
        async with running(fleet(200, orders), token) as fl:
            start = await last_seq(js)
            pub = SteadyPublisher(
                Publisher(js, timeout=2.0, allow_broadcast=True), rate=40, run="k9"
            ).start()
            await pub.until(40, timeout=20)
            await gw1.kill()  # SIGKILL: no close frames, no drain
            await pub.until(120, timeout=30)
            published = await pub.stop()
            assert len(published) == len({r.seq for r in published}) >= 120

            await settle(fl, js, after=start)
            moved = [f for f in fl.followers if f.welcomed[0] == gw1.ws_url]
            assert len(moved) == 100
            assert {f.welcomed[-1] for f in fl.followers} == {gw2.ws_url}
            for f in moved:
                resumed = [e for e in f.events if isinstance(e, Recovered)]
                assert resumed, f"{f.name} was not resumed with recovered: true"


# --- 3. SIGTERM drain --------------------------------------------------------------------------

DRAIN = 2.0
EXIT_MARGIN = 4.0  # closing + interpreter teardown: measured up to 3.3 s on a loaded 2-core machine


@pytest.mark.slow
async def test_sigterm_drain_moves_clients_loses_nothing_and_exits_in_time(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path, token: Mint
) -> None:
    env = {"TIDINGS_GATEWAY_DRAIN_SECONDS": str(DRAIN)}
    async with gateway_processes(2, nats_server.url, tmp_path, env=env) as (gw1, gw2):
        orders = [(gw1.ws_url, gw2.ws_url), (gw2.ws_url, gw1.ws_url)]
        async with running(fleet(100, orders), token) as fl:
            start = await last_seq(js)
            pub = SteadyPublisher(
                Publisher(js, timeout=2.0, allow_broadcast=True), rate=40, run="dr"
            ).start()
            await pub.until(30, timeout=20)

            began = time.monotonic()
            gw1.send_signal(signal.SIGTERM)
            code = await gw1.wait_exit(timeout=DRAIN + 15)
            took = time.monotonic() - began
            assert code == 0, gw1.log()
            assert took <= DRAIN + EXIT_MARGIN, f"exited after {took:.1f}s"

            await pub.until(len(pub.results) + 30, timeout=20)
            await pub.stop()
            await settle(fl, js, after=start)

            moved = [f for f in fl.followers if f.welcomed[0] == gw1.ws_url]
            stayed = [f for f in fl.followers if f.welcomed[0] == gw2.ws_url]
            assert len(moved) == len(stayed) == 50
            assert [f.name for f in moved if not f.moved_on_request()] == []
            assert [f.name for f in stayed if f.moved_on_request() or len(f.welcomed) > 1] == []
            assert {f.welcomed[-1] for f in fl.followers} == {gw2.ws_url}
            drains = [r for r in gw1.records() if r.get("message") == "draining"]
            assert [r.get("connections") for r in drains] == [50]


# --- 4. nats-server restart --------------------------------------------------------------------


async def heals_from_the_stream(gw: GatewayProcess) -> float:
    """How many connections the gateway healed with a JetStream read (after checking that it
    reconnected, is ready, and had to reset nobody)."""
    said = [str(r.get("message")) for r in gw.records()]
    assert "NATS reconnected; healing connections" in said
    async with gw.http() as http:
        assert (await http.get("/readyz")).status_code == 200
    async with gw.http(metrics=True) as http:
        text = (await http.get("/metrics")).text
    assert metric(text, "tidings_gateway_resumes_total", outcome="not_recovered") == 0
    return metric(text, "tidings_gateway_resumes_total", outcome="jetstream")


@pytest.mark.slow
async def test_nats_restart_under_traffic_leaves_no_client_with_a_gap(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path, token: Mint
) -> None:
    # The gateways come back to NATS after the publisher does, so some notifications are
    # stored while no gateway is subscribed: only the heal's JetStream read can deliver those.
    env = {"TIDINGS_NATS_RECONNECT_WAIT": "1.0"}
    fast = await nats.connect(nats_server.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    try:
        async with (
            gateway_processes(2, nats_server.url, tmp_path, env=env) as (gw1, gw2),
            running(fleet(60, [(gw1.ws_url, gw2.ws_url), (gw2.ws_url, gw1.ws_url)]), token) as fl,
        ):
            start = await last_seq(js)
            pub = SteadyPublisher(
                Publisher(fast.jetstream(), timeout=1.0, allow_broadcast=True), rate=30, run="nr"
            )
            pub.start()
            await pub.until(30, timeout=20)

            await asyncio.to_thread(nats_server.stop)
            # Down until a publish has failed for it (not a fixed pause: on a quick machine the
            # outage could end before any publish timed out, and the gap would not be tested).
            async with asyncio.timeout(15):
                while pub.retries == 0:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # and a little longer, so more than one is stored late
            await asyncio.to_thread(nats_server.start)

            await pub.until(len(pub.results) + 45, timeout=60)
            await pub.stop()
            await settle(fl, js, after=start)
            # Nobody had to reconnect: each gateway healed its own NATS link.
            assert [f.name for f in fl.followers if len(f.welcomed) != 1] == []
            healed = [await heals_from_the_stream(gw) for gw in (gw1, gw2)]
            assert sum(healed) > 0, "no heal needed the stream: the gap was not exercised"
    finally:
        await fast.close()


# --- 5. a client that stops reading ------------------------------------------------------------

BLOB = 16_000  # bytes of padding per firehose notification
WINDOW = 600  # TIDINGS_GATEWAY_REPLAY_MAX_MESSAGES: the per-tenant window is this many at most
ABANDONED = 8
ROUNDS, ROUND = 6, 200  # firehose notifications published while they are stuck


class SlowReader:
    """A raw WebSocket with a tiny receive buffer that can stop (and restart) reading."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.seqs: list[int] = []
        self.welcome: dict[str, Any] = {}

    async def open(self, tok: str, **hello: Any) -> SlowReader:
        host, port = self.url.removeprefix("ws://").split("/")[0].split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        self.ws = await connect(
            self.url, sock=sock, subprotocols=[Subprotocol(SUBPROTOCOL)], max_queue=1
        )
        await self.ws.send(orjson.dumps({"type": "hello", "token": tok, **hello}).decode())
        async with asyncio.timeout(10):
            while "synced" not in (kinds := self._take(await self.ws.recv())):
                assert "error" not in kinds
        return self

    def _take(self, raw: str | bytes) -> set[str]:
        kinds = set()
        for line in (raw if isinstance(raw, bytes) else raw.encode()).split(b"\n"):
            obj = orjson.loads(line)
            kinds.add(obj["type"])
            if obj["type"] == "notification":
                self.seqs.append(obj["seq"])
            elif obj["type"] == "welcome":
                self.welcome = obj
        return kinds

    async def read_until(self, seq: int, *, timeout: float = 10.0) -> None:
        """Read on until a notification with ``seq`` or later arrived."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while not self.seqs or self.seqs[-1] < seq:
                self._take(await self.ws.recv())

    async def read_to_close(self, *, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """Read everything still buffered until the gateway's close; its (code, reason)."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            try:
                while True:
                    self._take(await self.ws.recv())
            except ConnectionClosed as exc:
                return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, None)

    @property
    def position(self) -> int:
        return self.seqs[-1] if self.seqs else int(self.welcome["seq"])

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssWatch:
    """Samples a process's resident memory every 50 ms; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_bytes(pid)
        self.peak = self.base
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_bytes(self.pid))
        return self.peak - self.base


async def slow_closes(gw: GatewayProcess) -> float:
    async with gw.http(metrics=True) as http:
        return metric(
            (await http.get("/metrics")).text, "tidings_gateway_slow_consumer_closes_total"
        )


async def firehose(pub: Publisher, count: int, *, run: str) -> None:
    """``count`` big notifications to room:firehose of acme, pipelined in batches of 20."""
    for start in range(0, count, 20):
        await pub.publish_batch(
            [
                {
                    "tenant": "acme",
                    "audience": {"room": "firehose"},
                    "event": "incident.created",
                    "title": f"{run}{i}",
                    "message": "m",
                    "data": {"blob": "x" * BLOB},
                }
                for i in range(start, min(count, start + 20))
            ]
        )


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_1013_others_unharmed_memory_bounded(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path, token: Mint
) -> None:
    env = {"TIDINGS_GATEWAY_REPLAY_MAX_MESSAGES": str(WINDOW)}
    async with gateway_processes(1, nats_server.url, tmp_path, env=env) as (gw,):
        assert gw.pid is not None
        sloth = token(tenant="acme", user="sloth", rooms=["firehose"])
        firehose_rooms = {"tenant", "user:sloth", "room:firehose"}
        async with running(fleet(10, [(gw.ws_url,)]), token) as others:
            start = await last_seq(js)
            pub = Publisher(js, timeout=5.0, allow_broadcast=True)
            probes = SteadyPublisher(pub, rate=20, run="probe").start()  # for the others
            await probes.until(10, timeout=20)
            watch = RssWatch(gw.pid)

            # One client stops reading while the firehose runs: it is closed as a slow consumer.
            slow = await SlowReader(gw.ws_url).open(sloth, rooms=["room:firehose"])
            async with asyncio.timeout(60):
                while await slow_closes(gw) < 1:
                    await firehose(pub, 20, run="a")
            code, reason = await slow.read_to_close()  # it reads again: the close is 1013
            assert (code, reason) == (1013, "slow_consumer")
            await firehose(pub, 60, run="b")  # missed while away

            # It resumes from what it processed and gets everything after it, once.
            again = SlowReader(gw.ws_url)
            await again.open(
                sloth, rooms=["room:firehose"], since=slow.position, epoch=slow.welcome["epoch"]
            )
            assert again.welcome["recovered"] is True
            stored = await read_stream(js, start=slow.position + 1)
            want = expected_seqs(stored, tenant="acme", rooms=firehose_rooms, after=slow.position)
            await again.read_until(want[-1])
            assert again.seqs[: len(want)] == want
            assert slow.seqs + again.seqs == sorted(set(slow.seqs + again.seqs))
            again.abort()

            # Clients that never read again: each is cut off at the outbound bound, so the
            # gateway's memory levels off at what its window holds, however much follows.
            abandoned = [
                await SlowReader(gw.ws_url).open(sloth, rooms=["room:firehose"])
                for _ in range(ABANDONED)
            ]
            rss: list[int] = []
            for i in range(ROUNDS):
                await firehose(pub, ROUND, run=f"c{i}")
                rss.append(rss_bytes(gw.pid))
            closes = await slow_closes(gw)
            peak = await watch.stop()
            for s in abandoned:
                s.abort()
            await probes.stop()
            await settle(others, js, after=start)

        assert closes == 1 + ABANDONED
        # Over the last rounds the abandoned clients would have been sent ABANDONED * 9.6 MB.
        late = rss[-1] - rss[ROUNDS // 2 - 1]
        assert late < 8 << 20, [f"{(r - watch.base) >> 20} MiB" for r in rss]
        assert peak < 96 << 20, f"RSS grew {peak >> 20} MiB"
        latencies = sorted(x for f in others.followers for x in f.latencies)
        assert len(latencies) > 50, "the other clients measured nothing"
        assert latencies[len(latencies) // 2] < 0.25, latencies[-20:]
        assert latencies[-1] < 2.0, latencies[-20:]
