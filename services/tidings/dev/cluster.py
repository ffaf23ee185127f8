"""Several clustered nats-server processes on loopback: the production shape on one machine.

``tidings dev --nats-cluster 3`` and the fault tests use it. Each node is an
:class:`EmbeddedNats` with its own store and a config file naming the others as routes, so a
node killed and restarted rejoins with its data. A development tool: production never imports it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from tidings.dev.embedded import EmbeddedNats
from tidings.errors import StartFailed
from tidings.ports import free_port

CLUSTER_NAME = "tidings"


class NatsCluster:
    """``size`` nats-servers routed to each other, JetStream on each (R3 needs three)."""

    def __init__(
        self,
        base_dir: Path,
        *,
        size: int = 3,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        hosts: Sequence[str] | None = None,
        route_ports: Sequence[int] | None = None,
        enter: Sequence[Callable[[], None]] | None = None,
    ) -> None:
        """``hosts`` gives each node its own address (nodes in network namespaces,
        :class:`tidings.dev.netns.NetLab`), with ``enter`` the ``preexec_fn`` that puts node i
        in its namespace; there free ports cannot be probed from here, so ``ports`` and
        ``route_ports`` must be given (e.g. 4222 and 6222 on every node)."""
        if size < 1:
            raise StartFailed("a cluster has at least one node")
        for what, given in (
            ("client ports", ports),
            ("hosts", hosts),
            ("route ports", route_ports),
            ("namespace entries", enter),
        ):
            if given is not None and len(given) != size:
                raise StartFailed(f"{len(given)} {what} for {size} nodes")
        if hosts is not None and (ports is None or route_ports is None):
            raise StartFailed("nodes on their own hosts need their client and route ports given")
        self.base_dir = base_dir
        self.host = host
        self.hosts = list(hosts) if hosts is not None else [host] * size
        self.route_ports = (
            list(route_ports) if route_ports is not None else [free_port(host) for _ in range(size)]
        )
        self.nodes: list[EmbeddedNats] = []
        for i in range(size):
            store = base_dir / f"n{i}"
            store.mkdir(parents=True, exist_ok=True)
            config = store / "node.conf"
            port = ports[i] if ports is not None else None
            node = EmbeddedNats(
                store,
                port=port,
                host=self.hosts[i],
                config=config,
                name=f"n{i}",
                preexec=enter[i] if enter is not None else None,
            )
            config.write_text(self._config(i))
            self.nodes.append(node)

    def _config(self, i: int) -> str:
        routes = ", ".join(
            f'"nats-route://{self.hosts[j]}:{p}"' for j, p in enumerate(self.route_ports) if j != i
        )
        return (
            f"cluster {{\n  name: {CLUSTER_NAME}\n"
            f"  listen: {self.hosts[i]}:{self.route_ports[i]}\n"
            f"  routes: [{routes}]\n}}\n"
        )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated, as ``TIDINGS_NATS_URLS`` takes them."""
        return ",".join(self.urls)

    def start(self, *, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start(timeout=timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.send(signal.SIGCONT)  # a frozen node would not see its SIGTERM
            node.stop()

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (a crash: no goodbye to its peers)."""
        self.nodes[i].kill()

    def freeze(self, i: int) -> None:
        self.nodes[i].send(signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        self.nodes[i].send(signal.SIGCONT)

    def restart(self, i: int) -> None:
        self.nodes[i].start()

    async def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Until JetStream answers through every running node (a meta leader is elected)."""
        import nats

        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue
            nc = await nats.connect(node.url, allow_reconnect=False)
            try:
                while True:
                    try:
                        await nc.jetstream().account_info()
                        break
                    except Exception:  # no meta leader yet: keep asking
                        if time.monotonic() > deadline:
                            raise StartFailed(
                                f"JetStream on {node.name} not ready after {timeout:.0f}s"
                            ) from None
                        await asyncio.sleep(0.2)
            finally:
                await nc.close()

    async def stream_leader(self, stream: str, *, timeout: float = 30.0) -> int:
        """The index of the node leading ``stream`` (waits through an election)."""
        import nats

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            urls = [n.url for n in self.nodes if n.running]
            try:
                nc = await nats.connect(urls, allow_reconnect=False, connect_timeout=2)
                try:
                    info = await nc.jetstream().stream_info(stream)
                finally:
                    await nc.close()
                leader = info.cluster.leader if info.cluster else None
                if leader:
                    return self.index_of(leader)
            except Exception as exc:  # an election under way: ask again
                last = exc
            else:
                last = None
            if time.monotonic() > deadline:
                raise StartFailed(f"stream {stream} has no leader after {timeout:.0f}s: {last!r}")
            await asyncio.sleep(0.2)

    def index_of(self, server_name: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.name == server_name:
                return i
        raise KeyError(server_name)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
