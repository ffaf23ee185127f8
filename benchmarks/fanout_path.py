"""CPU and writes of the gateway's fan-out alone (`gateway/fanout.py`), without sockets.

The end-to-end bench (`tidings bench`) measures the whole gateway; this measures the hub's own
Python per notification and how many socket writes it asks for, steadily enough to compare two
versions of the code on a shared machine (``time.process_time``; medians over ``--rounds``).
Each layout queues batches of notifications the way the live handler does and flushes them as
the batching window would; the sinks only count writes (the kernel's send, ~10 µs each on
loopback here, is what the end-to-end bench measures).

    python -m benchmarks.fanout_path --rounds 5
    PYTHONPATH=/path/to/other/tree/services:. python -m benchmarks.fanout_path   # another version
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable

from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import Hub

BODY = b'{"type":"notification","seq":1,"id":"01JZ","event":"incident.created",' + b"x" * 200 + b"}"
Batch = list[tuple[str, str]]  # (tenant, room) of each notification of one flush


class CountingSink:
    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0

    def write_frame(self, frame: bytearray) -> None:
        self.writes += 1

    def close(self, code: int, reason: str) -> None:
        pass


def _hub(clients: int, tenants: int) -> tuple[Hub, list[CountingSink]]:
    hub = Hub(window=0.002, on_slow=lambda c: None)
    sinks = []
    for i in range(clients):
        sink = CountingSink()
        conn = Connection(sink)
        conn.tenant, conn.user = f"t{i % tenants}", f"u{i}"
        conn.move(State.SYNCING)
        hub.add(conn, ["tenant", f"user:u{i}"])
        conn.move(State.LIVE)
        sinks.append(sink)
    return hub, sinks


def _layouts(rng: random.Random) -> dict[str, tuple[int, int, Callable[[], Batch], int]]:
    """name -> (clients, tenants, one flush's notifications, flushes)."""

    def users(tenants: int) -> Callable[[], Batch]:
        return lambda: [(f"t{i % tenants}", f"user:u{i}") for i in rng.sample(range(10_000), 30)]

    def mixed() -> Batch:  # tenant rooms of 10 and their users' rooms, half each
        picks = [(j % 100, rng.random() < 0.5) for j in range(200)]
        return [
            (f"t{t}", "tenant" if room else f"user:u{rng.randrange(10) * 100 + t}")
            for t, room in picks
        ]

    return {
        "users, 100 tenants, 30 per flush": (10_000, 100, users(100), 2000),
        "users, a tenant each, 30 per flush": (10_000, 10_000, users(10_000), 2000),
        "100 rooms of 10, 100 per flush": (
            1000,
            100,
            lambda: [(f"t{i}", "tenant") for i in range(100)],
            500,
        ),
        "100 rooms of 10 + user rooms, 200 per flush": (1000, 100, mixed, 200),
        "one room of 1,000, 10 per flush": (1000, 1, lambda: [("t0", "tenant")] * 10, 500),
    }


async def _measure(layout: tuple[int, int, Callable[[], Batch], int]) -> tuple[float, float]:
    """CPU µs per notification, socket writes per notification."""
    clients, tenants, make, flushes = layout
    hub, sinks = _hub(clients, tenants)
    batches = [make() for _ in range(flushes)]
    seq = 0
    began = time.process_time()
    for batch in batches:
        for tenant, room in batch:
            seq += 1
            hub.publish(seq, tenant, room, BODY)
        hub.flush()
    cpu = time.process_time() - began
    return cpu / seq * 1e6, sum(s.writes for s in sinks) / seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name, layout in _layouts(random.Random(1)).items():
        runs = [asyncio.run(_measure(layout)) for _ in range(args.rounds)]
        cpu = statistics.median(r[0] for r in runs)
        print(f"{name:46} {cpu:6.2f} µs/notification  {runs[0][1]:6.2f} writes/notification")


if __name__ == "__main__":
    main()
