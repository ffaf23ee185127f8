"""Light storm clients: the Tidings protocol on picows (Cython) and uvloop, thousands per process.

The SDK's ``Subscriber`` costs enough Python per connection that 10,000 of them starve on a
small machine during a reconnect storm (their handshakes time out, they reconnect again, and the
load generator collapses while the gateways idle: benchmarks/RESULTS.md). A :class:`Light`
client does only what the storm checks: ``hello`` with its token and resume point, every frame
parsed (``welcome``, ``notification``, ``synced``, ``reset``, ``error``), every ``seq`` kept as
received (a duplicate or a reordering stays visible), reconnect with the SDK's backoff (full
jitter) from its last ``seq``. The process speaks to its owner like
:mod:`tests.support.storm_clients` (``ready``, ``check <seq>``, one JSON report line), so
:class:`~tests.support.storm_clients.StormProcess` runs either (``light=True``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tidings.protocol import SUBPROTOCOL

OPEN_TIMEOUT = 10.0  # the SDK's default open_timeout
BASE, CAP = 0.5, 2.0  # backoff: uniform(0, min(CAP, BASE * 2**attempt)), as storm_clients


@dataclass(slots=True, eq=False)
class Light:
    """One client: who it is, what it received, when it was down."""

    name: str
    tenant: str
    user: str
    roles: tuple[str, ...]
    named: tuple[str, ...]
    token: str = ""
    seqs: list[int] = field(default_factory=list)
    epoch: str | None = None
    welcomed: int = 0
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    down_at: float | None = None
    outage_list: list[float] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sub: None = None  # what tests.support.fault_load.tally asks of an SDK follower
    # The last outage, phase by phase (monotonic): socket lost, each connect attempt begun
    # (after its backoff), the 101 (nginx and the gateway upgraded), welcome (hello and token
    # checked), synced (resume answered). The storm report gives quantiles of each step.
    attempts: list[float] = field(default_factory=list)
    opened_at: float | None = None
    welcome_at: float | None = None
    phases: dict[str, float] | None = None

    @property
    def rooms(self) -> set[str]:
        return {"tenant", f"user:{self.user}", *(f"role:{r}" for r in self.roles), *self.named}

    def hello(self) -> bytes:
        frame: dict[str, Any] = {"type": "hello", "token": self.token, "rooms": list(self.named)}
        if self.seqs and self.epoch is not None:
            frame["since"], frame["epoch"] = max(self.seqs), self.epoch
        return orjson.dumps(frame)

    def on_line(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "notification":
            self.seqs.append(int(frame["seq"]))
            self.progress.set()
        elif kind == "welcome":
            self.welcomed += 1
            self.welcome_at = time.monotonic()
            self.epoch = str(frame["epoch"])
        elif kind == "synced":
            if self.down_at is not None:
                now = time.monotonic()
                self.outage_list.append(now - self.down_at)
                self._phases(now)
                self.down_at = None
            self.synced.set()
        elif kind == "reset":
            self.resets.append(frame)
            self.epoch = str(frame["epoch"])
        elif kind == "error":
            self.errors.append(str(frame.get("code")))

    def _phases(self, synced_at: float) -> None:
        down, tries = self.down_at, self.attempts
        if down is None or not tries or self.opened_at is None or self.welcome_at is None:
            return
        self.phases = {
            "backoff": tries[0] - down,  # lost to the first attempt
            "retrying": tries[-1] - tries[0],  # first to last attempt (failed ones between)
            "upgrade": self.opened_at - tries[-1],  # TCP + nginx + upstream + 101
            "hello": self.welcome_at - self.opened_at,  # hello sent to welcome
            "resume": synced_at - self.welcome_at,  # welcome to synced (backfill, replay)
            "attempts": float(len(tries)),
            "down": down,  # absolute: the owner aligns the processes' clocks by the kill
        }

    def lost_socket(self) -> None:
        if self.down_at is None:
            self.down_at = time.monotonic()
            self.attempts = []

    def outages(self) -> list[float]:
        return list(self.outage_list)


class _Listener(WSListener):  # type: ignore[misc]
    def __init__(self, client: Light) -> None:
        self.client = client

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.client.opened_at = time.monotonic()
        transport.send(WSMsgType.TEXT, self.client.hello())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            for line in frame.get_payload_as_bytes().split(b"\n"):
                if line:
                    self.client.on_line(orjson.loads(line))
        elif frame.msg_type == WSMsgType.CLOSE:
            self.client.errors.append(f"close {int(frame.get_close_code())}")  # who ended it
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client.lost_socket()


async def follow(client: Light, url: str, stop: asyncio.Event) -> None:
    """Connect, read until the socket goes, wait the backoff, again, until ``stop``."""
    attempt = 0
    rng = random.Random()
    headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL}
    while not stop.is_set():
        welcomed = client.welcomed
        if client.down_at is not None:
            client.attempts.append(time.monotonic())
        try:
            transport, _ = await ws_connect(
                lambda: _Listener(client),
                url,
                websocket_handshake_timeout=OPEN_TIMEOUT,
                extra_headers=headers,
                enable_auto_ping=False,
            )
        except Exception:  # refused, reset, timed out: the next attempt after the backoff
            client.lost_socket()
        else:
            stopping = asyncio.ensure_future(stop.wait())
            gone = asyncio.ensure_future(transport.wait_disconnected())
            await asyncio.wait([stopping, gone], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not gone.done():
                transport.disconnect()
                await gone
                return
        attempt = 0 if client.welcomed > welcomed else attempt + 1
        delay = rng.uniform(0, min(CAP, BASE * 2**attempt))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def _run(args: argparse.Namespace) -> None:
    import nats

    from tests.support.fault_load import mint, tally
    from tests.support.load_clients import expected_seqs, fleet, read_stream

    tenants = tuple(args.tenants.split(","))
    clients = [
        Light(f"{args.name}-{f.name}", f.tenant, f.user, f.roles, f.named)
        for f in fleet(args.count, [(args.url,)], tenants=tenants).followers
    ]
    for c in clients:
        c.token = mint(tenant=c.tenant, user=c.user, roles=list(c.roles), rooms=["site-*"])
    stop = asyncio.Event()
    began = time.monotonic()
    status = asyncio.ensure_future(_status(clients, began))
    tasks = []
    for i, c in enumerate(clients):  # a ramp of --concurrency connections at a time
        tasks.append(asyncio.ensure_future(follow(c, args.url, stop)))
        if i % args.concurrency == args.concurrency - 1:
            await asyncio.wait_for(
                asyncio.gather(*(x.synced.wait() for x in clients[: i + 1])), args.timeout
            )
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), args.timeout)
    # A load generator, not a fleet: 5,000 clients share this process, and the cyclic
    # collector's full passes stopped all of them at once in the middle of the storm
    # (measured: 10-40 s of collections per process after the fill, the longest 2.2-5.3 s
    # on the loaded machine; gc.freeze() after the fill did not shorten them). A real
    # client's device never pauses for 5,000 others, so the collector is off from here to
    # the end of the run (bounded: the process ends with it).
    gc.collect()
    if os.environ.get("STORM_GC", "off") == "off":
        gc.disable()
    pauses = _GcPauses()
    print(f"ready {time.monotonic() - began:.1f}", flush=True)
    lags: list[float] = []
    sampler = asyncio.ensure_future(_loop_lag(lags))
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start = int(line.split()[1])
    nc = await nats.connect(args.nats.split(","))
    try:
        stored = await read_stream(nc.jetstream(timeout=10), start=start + 1, timeout=30)
    finally:
        await nc.close()
    deadline = time.monotonic() + args.timeout
    late = []
    for c in clients:  # until each got its last expected seq (or time runs out)
        want = expected_seqs(stored, tenant=c.tenant, rooms=c.rooms, after=start)
        while want and not (c.seqs and max(c.seqs) >= want[-1]):
            c.progress.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                late.append(f"{c.name} stuck at {max(c.seqs, default=0)} < {want[-1]}")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.progress.wait(), left)
    sampler.cancel()
    status.cancel()
    counts = tally(clients, stored, after=start)  # type: ignore[arg-type]
    problems = [f"{c.name}: reset {c.resets}" for c in clients if c.resets]
    if counts.clients_hit:
        problems.append(f"{counts.clients_hit} clients differ from the stream: {counts}")
    report: dict[str, Any] = {
        "clients": len(clients),
        "late": late[:20],
        "late_count": len(late),
        "problems": problems[:20],
        "problem_count": len(problems),
        "tally": counts.as_dict(),
        "outages": [max(c.outage_list, default=0.0) for c in clients],
        "moved": sum(c.welcomed > 1 for c in clients),
        "deliveries": sum(len(c.seqs) for c in clients),
        "errors": sorted({e for c in clients for e in c.errors}),
        "phases": [c.phases for c in clients if c.phases is not None],
        "loop_lag": _lag_summary(lags),
        "gc": pauses.summary(),
        "error_counts": dict(Counter(e for c in clients for e in c.errors)),
    }
    print(orjson.dumps(report).decode(), flush=True)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


LAG_TICK = 0.1


class _GcPauses:
    """How long the cyclic collector stopped this process, from the ready line on."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)

    def summary(self) -> dict[str, float]:
        gc.callbacks.remove(self._callback)
        return {
            "collections": float(len(self.pauses)),
            "total_s": round(sum(self.pauses), 3),
            "max_s": round(max(self.pauses, default=0.0), 3),
        }


async def _status(clients: list[Light], began: float) -> None:
    """Every 5 s, to stderr (the process's log): connections made, lost, error frames and
    close codes so far — what a stuck fill or a slow storm shows while it runs."""
    while True:
        await asyncio.sleep(5)
        line = {
            "t": round(time.monotonic() - began, 1),
            "welcomed": sum(c.welcomed for c in clients),
            "down": sum(c.down_at is not None for c in clients),
            "errors": dict(Counter(e for c in clients for e in c.errors)),
        }
        print(orjson.dumps(line).decode(), file=sys.stderr, flush=True)


async def _loop_lag(lags: list[float]) -> None:
    """How late this process's event loop runs a 0.1 s timer: a loop that is busy (or waits
    for a core) delays every client in it by as much."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(LAG_TICK)
        lags.append(time.monotonic() - asked - LAG_TICK)


def _lag_summary(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {}
    ordered = sorted(lags)
    return {
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
        "over_1s": round(sum(x for x in lags if x > 1.0), 1),  # seconds lost in long stalls
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="s")
    parser.add_argument("--url", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tenants", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # plain asyncio: slower, same behaviour
        asyncio.run(_run(args))
    else:
        uvloop.run(_run(args))


if __name__ == "__main__":
    main()
