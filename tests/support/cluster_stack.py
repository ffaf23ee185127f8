"""The production shape on loopback for tests: a NATS cluster with the stream at R3, gateway
processes, the publisher sidecar, and a real nginx in front of the gateways.

It is built from the same parts as ``tidings dev --nats-cluster 3 --gateways 3``
(:class:`tidings.dev.cluster.NatsCluster`, :class:`tidings.dev.ingress.Nginx`), with the
gateways as :class:`GatewayProcess` so a test can kill, drain and restart them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nats.js.errors import BadRequestError

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tests.support.publisher_process import PublisherProcess, metric
from tidings.dev.cluster import NatsCluster
from tidings.dev.ingress import Nginx, Upstream
from tidings.nats import provision
from tidings.publishing import PublishResult
from tidings.settings import NatsSettings, StreamSettings


@dataclass(slots=True)
class ClusterStack:
    cluster: NatsCluster
    gateways: list[GatewayProcess]
    ingress: Nginx
    publisher: PublisherProcess

    def pids(self) -> list[int]:
        """Every process the stack started that is running now (nginx's workers included)."""
        found = [n.process.pid for n in self.cluster.nodes if n.process is not None]
        found += [g.pid for g in self.gateways if g.pid is not None]
        if self.publisher.process is not None:
            found.append(self.publisher.process.pid)
        return found + self.ingress.pids()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def connections(stack: ClusterStack) -> list[float]:
    """Open WebSockets per gateway (its own /metrics, not through nginx; 0 when stopped)."""
    counts = []
    for gw in stack.gateways:
        if not gw.running:
            counts.append(0.0)
            continue
        async with gw.http(metrics=True) as http:
            text = (await http.get("/metrics")).text
        counts.append(metric(text, "tidings_gateway_connections"))
    return counts


class SidecarPublisher:
    """Publishes through the sidecar's HTTP API, as an application would.

    A 5xx answer or a transport error raises ``ConnectionError`` (one of the SDK's transient
    errors), so :class:`SteadyPublisher` retries it with the same id.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout)

    async def publish(self, body: dict[str, Any]) -> PublishResult:
        try:
            resp = await self.http.post("/v1/notifications", json=body)
        except httpx.TransportError as exc:
            raise ConnectionError(f"sidecar unreachable: {exc!r}") from exc
        if resp.status_code >= 500:
            raise ConnectionError(f"sidecar answered {resp.status_code}: {resp.text}")
        assert resp.status_code == 202, resp.text  # a 4xx is a bug in the test
        answer = resp.json()
        return PublishResult(
            id=answer["id"],
            seq=answer.get("seq"),
            duplicate=bool(answer.get("duplicate")),
            queued=bool(answer.get("queued")),
        )

    async def close(self) -> None:
        await self.http.aclose()


NO_PEERS = 10005  # JetStream: "no suitable peers for placement"


async def _provision(urls: list[str], *, replicas: int, timeout: float = 30.0) -> None:
    """Create the stream; while the cluster has a meta leader but not yet every peer known to
    JetStream (seen on a loaded machine right after ``wait_ready``), an R3 stream is refused
    with "no suitable peers for placement": asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await provision(NatsSettings(urls=urls), StreamSettings(replicas=replicas))
            return
        except BadRequestError as exc:
            if exc.err_code != NO_PEERS or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


@asynccontextmanager
async def cluster_stack(
    directory: Path,
    *,
    nodes: int = 3,
    gateways: int = 3,
    env: dict[str, str] | None = None,
    cluster: NatsCluster | None = None,
    pinned: bool = False,
    start_timeout: float = 20.0,
) -> AsyncIterator[ClusterStack]:
    """Start everything, yield it, and stop everything by PID (the test checks none is left).

    ``cluster``: a cluster built by the caller (e.g. its nodes in network namespaces,
    tests/support/partition.py), started and stopped here. ``pinned``: gateway i is given only
    node i's URL (it connects there first, and learns the others from the server), so a fault
    of one node hits a known gateway. ``start_timeout``: how long each gateway may take to get
    ready (a benchmark on a loaded machine gives more).
    """
    cluster = cluster if cluster is not None else NatsCluster(directory / "nats", size=nodes)
    nodes = len(cluster.nodes)
    publisher = PublisherProcess(
        {
            "TIDINGS_NATS_URLS": cluster.url,
            "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
            "TIDINGS_PUBLISHER_HOST": "127.0.0.1",
            "TIDINGS_PUBLISHER_ALLOW_BROADCAST": "true",  # the load mixes broadcasts in
            "TIDINGS_PUBLISHER_OUTBOX_DIR": str(directory / "outbox"),
        },
        log_file=directory / "publisher.log",
    )
    try:
        cluster.start()
        await cluster.wait_ready()
        await _provision(cluster.urls, replicas=min(nodes, 3))
        publisher.start()
        pins = [cluster.urls[i % nodes] for i in range(gateways)] if pinned else None
        async with gateway_processes(
            gateways, cluster.urls, directory, env=env, pinned=pins, timeout=start_timeout
        ) as gws:
            ingress = Nginx(
                directory / "ingress", [Upstream(g.port, g.api_port) for g in gws]
            ).start()
            try:
                await publisher.wait_healthy()
                yield ClusterStack(cluster, gws, ingress, publisher)
            finally:
                ingress.stop()
    finally:
        try:
            publisher.stop()  # fails the test if it does not exit in time (after killing it)
        finally:
            cluster.stop()
