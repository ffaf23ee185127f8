"""A 3-node JetStream cluster with the stream at R3, and gateways pinned to one node of it.

The cluster tests (tests/integration/test_cluster_*.py) start the production shape of NATS on
loopback (``tidings.dev.cluster.NatsCluster``), attack one node (kill, freeze) and check what a
user would: every client holds exactly what the stream holds for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tidings.dev.cluster import NatsCluster
from tidings.nats import ensure_stream_placed
from tidings.settings import StreamSettings

STREAM = "TIDINGS"


@asynccontextmanager
async def r3_cluster(base: Path) -> AsyncIterator[tuple[NatsCluster, JetStreamContext]]:
    """Three clustered nodes, the stream at R3, and a JetStream context that reconnects."""
    with NatsCluster(base / "nats", size=3) as cluster:
        await cluster.wait_ready()
        nc = await nats.connect(
            cluster.urls, reconnect_time_wait=0.1, max_reconnect_attempts=-1, ping_interval=1
        )
        try:
            js = nc.jetstream(timeout=2.0)
            stream = StreamSettings(replicas=3)
            await ensure_stream_placed(js, stream)
            # Created is not writable: until the replicas elect a leader a publish finds no
            # responder (seen: the first publish of a test failing with NoStreamResponseError).
            await cluster.stream_leader(stream.name)
            yield cluster, js
        finally:
            await nc.close()


def pinned_gateways(
    urls: list[str], base: Path, *, env: Mapping[str, str] | None = None
) -> AbstractAsyncContextManager[list[GatewayProcess]]:
    """Gateway i given only ``urls[i]`` (it connects there first; nats-py learns the other
    nodes from the server), started, ready, and stopped by PID at the end."""
    return gateway_processes(len(urls), urls, base, env=env, pinned=urls)


async def readiness(gw: GatewayProcess) -> tuple[int, dict[str, Any]]:
    """``/readyz``: its status and body ((0, {}) while the port does not answer)."""
    with contextlib.suppress(httpx.TransportError):
        async with gw.http(timeout=1.0) as http:
            answer = await http.get("/readyz")
            return answer.status_code, answer.json()
    return 0, {}


async def wait_readiness(gw: GatewayProcess, *, ready: bool, timeout: float) -> float:
    """Poll ``/readyz`` until it is (or is not) 200; the monotonic time it was first seen."""
    deadline = time.monotonic() + timeout
    while True:
        status, _ = await readiness(gw)
        if (status == 200) == ready:
            return time.monotonic()
        if time.monotonic() > deadline:
            state = "ready" if ready else "not ready"
            raise AssertionError(f"{gw.name} not {state} after {timeout:.0f}s:\n{gw.log()}")
        await asyncio.sleep(0.05)


def logged_at(gw: GatewayProcess, message: str) -> list[float]:
    """Wall times of every log record of ``gw`` with this message."""
    return [
        datetime.fromisoformat(str(r["time"]).replace("Z", "+00:00")).timestamp()
        for r in gw.records()
        if r.get("message") == message
    ]
