"""The systems under test, each started fresh on loopback: Tidings and its peers.

* ``tidings`` — the real path: publisher processes → JetStream (nats-server, file storage, the
  production stream settings) → ``tidings gateway`` (whatever its data path is) → clients.
  The publishers are the compiled ``jspub`` (``--publisher c``, the default) or the SDK's own
  ``publish_many`` (``python``); ``tidings@c`` / ``tidings@python`` name one explicitly, so
  both can run side by side in one run.
* ``nats`` — nats-server's own WebSocket listener; clients speak the NATS protocol (the native
  ceiling: no envelope, no auth, no stream; core NATS publish from ``jspub`` in its core mode,
  or with ``nats@python`` from nats-py as before issue 12).
* ``nats-js`` — the same listener as a leaf node of a JetStream server (with the generator)
  whose stream republishes what jspub stores: Tidings' hop and shape without Tidings.
* ``socketio-node`` — Socket.IO 4 on Node with ``@socket.io/redis-adapter`` and a local
  redis-server; publishers ``PUBLISH`` to Redis (the stack Tidings replaces): ``jspub`` in its
  Redis mode, or with ``socketio-node@python`` the asyncio publisher used before.
* ``socketio-py`` — python-socketio on uvicorn (one process), fed the same way.

A ``:node`` suffix (``nats:node``, ``socketio-node:node``) receives with the cross-check client
instead of ``wsload``: the peer's own official client in Node (``benchmarks/peers/recv.js``:
``@nats-io/nats-core`` over WebSocket, ``socket.io-client``), checking deliveries the same way.

The server under test runs on the server core; brokers (nats-server for Tidings, redis-server)
run with the generator, as they would on other machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tidings.auth import mint_token
from tidings.bench.layout import Layout
from tidings.bench.procs import Child, pin, prioritize
from tidings.dev.embedded import EmbeddedNats, nats_server_binary, wait_for_port
from tidings.errors import BenchFailed
from tidings.ports import free_port

SECRET = "tidings-bench-secret-0123456789abcdef-xyz"  # noqa: S105 - signs bench tokens only
# The bench's stream limits, for Tidings' stream and nats-js's alike: room for a whole run.
STREAM_LIMITS: dict[str, Any] = {"max_bytes": 4 << 30, "max_age": 3600.0, "duplicate_window": 60.0}
SYSTEMS = ("tidings", "nats", "nats-js", "socketio-node", "socketio-py")
RECEIVERS = {
    "c": "C wsload (epoll)",
    "node": "Node recv.js (the peer's official client)",
}
PUBLISHERS = {
    "c": "C jspub (HPUB pipelined, PubAcks counted)",
    "python": "Python publish_many (nats-py)",
}
NATS_PUBLISHERS = {
    "c": "C jspub (core NATS PUB, pipelined, PING/PONG per step)",
    "python": "Python nats-py (core NATS)",
}
REDIS_PUBLISHERS = {
    "c": "C jspub (Redis PUBLISH, pipelined, PING/PONG per step)",
    "python": "Python asyncio (Redis PUBLISH)",
}


def peers_dir() -> Path:
    """``benchmarks/peers`` of this checkout (``TIDINGS_BENCH_PEERS`` overrides)."""
    if "TIDINGS_BENCH_PEERS" in os.environ:
        return Path(os.environ["TIDINGS_BENCH_PEERS"])
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / "benchmarks" / "peers"
        if candidate.is_dir():
            return candidate
    raise BenchFailed(
        "benchmarks/peers not found; run from the repository or set TIDINGS_BENCH_PEERS"
    )


def _get_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310
        return int(r.status) == 200  # (a loopback URL we built)
    return False


class System:
    """One system's processes for one sweep; ``start`` then ``stop`` (idempotent)."""

    name = ""
    proto = ""  # wsload protocol
    backend = ""  # publisher backend
    publisher = "python"  # which publisher program: "python" (tidings.bench.publish) or "c"
    publisher_label = "Python"
    receiver = "c"  # load clients: "c" (wsload) or "node" (recv.js, peers only)

    def __init__(self, workdir: Path, *, server_core: int | None, gen_core: int | None, nice: int):
        self.workdir = workdir
        self.server_core = server_core
        self.gen_core = gen_core
        self.nice = nice
        self.port = 0
        self.children: list[Child] = []
        self.server_pids: list[int] = []
        self.broker_pids: list[int] = []

    def start(self, layout: Layout) -> None:
        raise NotImplementedError

    def spec(self, client: int, layout: Layout) -> str:
        raise NotImplementedError

    def publisher_options(self) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children = []

    def _child(self, argv: list[str], *, core: int | None, log: str, **kw: Any) -> Child:
        child = Child(argv, core=core, nice=self.nice, log=self.workdir / log, **kw)
        self.children.append(child)
        return child

    def _redis(self) -> int:
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no", "--maxclients", "1000"]
        try:
            child = self._child(argv, core=self.gen_core, log="redis.log", talk=False)
        except FileNotFoundError:
            raise BenchFailed("redis-server not found: run benchmarks/peers/setup.sh") from None
        wait_for_port(port, timeout=10)
        self.broker_pids.append(child.pid)
        return port


class Tidings(System):
    name, proto, backend = "tidings", "tidings", "jetstream"

    def __init__(
        self,
        *args: Any,
        storage: str = "file",
        window: float | None = None,
        publisher: str = "c",
        name: str = "tidings",
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        if publisher not in PUBLISHERS:
            raise BenchFailed(f"unknown publisher {publisher!r}; choose from c, python")
        self.name = name
        self.storage = storage
        self.window = window
        self.publisher = publisher
        self.publisher_label = PUBLISHERS[publisher]
        self.nats: EmbeddedNats | None = None

    def start(self, layout: Layout) -> None:
        from tidings.nats import ensure_stream
        from tidings.settings import StreamSettings

        self.nats = EmbeddedNats(self.workdir / "nats").start()
        assert self.nats.process is not None
        pin(self.nats.process.pid, self.gen_core)
        prioritize(self.nats.process.pid, self.nice)
        self.broker_pids.append(self.nats.process.pid)

        async def provision(url: str) -> None:
            import nats

            nc = await nats.connect(url)
            try:
                settings = StreamSettings(
                    storage=self.storage,  # type: ignore[arg-type]
                    **STREAM_LIMITS,
                )
                await ensure_stream(nc.jetstream(), settings)
            finally:
                await nc.close()

        asyncio.run(provision(self.nats.url))
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env |= {
            "TIDINGS_NATS_URLS": self.nats.url,
            "TIDINGS_GATEWAY_HOST": "127.0.0.1",
            "TIDINGS_GATEWAY_PORT": str(self.port),
            "TIDINGS_GATEWAY_API_PORT": str(free_port()),
            "TIDINGS_GATEWAY_METRICS_PORT": str(free_port()),
            "TIDINGS_GATEWAY_ALLOWED_ORIGINS": "*",
            "TIDINGS_AUTH_JWT_SECRET": SECRET,
            "TIDINGS_LOG_LEVEL": "WARNING",
            # The load clients connect all at once, up to 5,000 of one tenant (big-room): the
            # per-tenant connect limit (100/s, bursts of 1,000) would refuse most of them.
            "TIDINGS_GATEWAY_CONNECT_RATE_PER_TENANT": "0",
        }
        if self.window is not None:
            env["TIDINGS_GATEWAY_BATCH_WINDOW"] = str(self.window)
        argv = [sys.executable, "-m", "tidings", "gateway"]
        gw = self._child(argv, core=self.server_core, log="gateway.log", env=env, talk=False)
        self.server_pids.append(gw.pid)
        deadline = time.monotonic() + 30
        while not _get_ok(f"http://127.0.0.1:{self.port}/readyz"):
            if not gw.alive() or time.monotonic() > deadline:
                raise BenchFailed(f"tidings gateway did not get ready{gw.tail()}")
            time.sleep(0.1)
        self._tokens: dict[int, str] = {}

    def spec(self, client: int, layout: Layout) -> str:
        token = mint_token(
            SECRET, tenant=f"t{layout.room_of(client)}", user=f"u{client}", ttl=6 * 3600
        )
        return orjson.dumps({"type": "hello", "token": token}).decode()

    def publisher_options(self) -> dict[str, Any]:
        assert self.nats is not None
        return {"backend": self.backend, "url": self.nats.url, "stream": "TIDINGS"}

    def stop(self) -> None:
        super().stop()
        if self.nats is not None:
            self.nats.stop()
            self.nats = None


class NatsNative(System):
    name, proto, backend = "nats", "nats", "nats"

    def __init__(self, *args: Any, publisher: str = "c", **kw: Any):
        super().__init__(*args, **kw)
        if publisher not in NATS_PUBLISHERS:
            raise BenchFailed(f"unknown publisher {publisher!r}; choose from c, python")
        self.publisher = publisher
        self.publisher_label = NATS_PUBLISHERS[publisher]

    def start(self, layout: Layout) -> None:
        self.client_port, self.port = free_port(), free_port()
        conf = self.workdir / "nats-ws.conf"
        conf.write_text(self.config())
        argv = [str(nats_server_binary()), "-c", str(conf)]
        child = self._child(argv, core=self.server_core, log="nats-ws.log", talk=False)
        self.server_pids.append(child.pid)
        wait_for_port(self.port, timeout=10)
        wait_for_port(self.client_port, timeout=10)

    def config(self) -> str:
        return (
            f"listen: 127.0.0.1:{self.client_port}\n"
            "max_payload: 1MB\n"
            "websocket {\n"
            f'  listen: "127.0.0.1:{self.port}"\n'
            "  no_tls: true\n"
            "  compression: false\n"
            "}\n"
        )

    def spec(self, client: int, layout: Layout) -> str:
        return f"bench.t.{layout.room_of(client)} bench.u.{client}"

    def publisher_options(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": f"nats://127.0.0.1:{self.client_port}"}


class NatsJetStream(NatsNative):
    """nats-server's WebSocket fed through a stream, in Tidings' shape: a JetStream server with
    the generator (as Tidings' is) holds a stream on ``in.>`` (file storage, Tidings' limits)
    that republishes each stored message to ``bench.>``; the WebSocket server under test, on
    the server core, is its leaf node (NATS' own edge pattern), so the clients' subscriptions
    draw the republished messages over the leaf connection, as the gateway draws Tidings'.
    jspub publishes to the stream (``in.t.N``, PubAcks counted). Tidings' hop (store,
    acknowledge, republish, one more server) without Tidings: beside ``nats`` it prices the
    hop, beside ``tidings`` what the gateway adds."""

    name, backend = "nats-js", "nats-js"
    stream = "BENCH"

    def __init__(self, *args: Any, publisher: str = "c", **kw: Any):
        if publisher != "c":
            raise BenchFailed("nats-js is fed by jspub only (publisher c)")
        super().__init__(*args, publisher=publisher, **kw)
        self.publisher_label = "C jspub (HPUB of the core payload, pipelined, PubAcks counted)"
        self.hub: EmbeddedNats | None = None

    def config(self) -> str:
        return (
            super().config()
            + "leafnodes {\n"
            + f'  remotes: [{{ url: "nats-leaf://127.0.0.1:{self.leaf_port}" }}]\n'
            + "}\n"
        )

    def start(self, layout: Layout) -> None:
        self.leaf_port = free_port()
        hub_conf = self.workdir / "hub.conf"
        hub_conf.write_text(f'leafnodes {{\n  listen: "127.0.0.1:{self.leaf_port}"\n}}\n')
        self.hub = EmbeddedNats(self.workdir / "hub", config=hub_conf).start()
        assert self.hub.process is not None
        pin(self.hub.process.pid, self.gen_core)
        prioritize(self.hub.process.pid, self.nice)
        self.broker_pids.append(self.hub.process.pid)
        super().start(layout)  # the WebSocket server, a leaf of the hub
        asyncio.run(self._provision(self.hub.url, f"nats://127.0.0.1:{self.client_port}"))

    async def _provision(self, hub: str, edge: str) -> None:
        """The stream on the hub, then until a republished message reaches the edge (the leaf
        connection is up and carries interest)."""
        import nats
        from nats.js.api import RePublish, StorageType, StreamConfig

        hub_nc, edge_nc = await nats.connect(hub), await nats.connect(edge)
        try:
            js = hub_nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=["in.>"],
                    storage=StorageType.FILE,
                    republish=RePublish(src="in.>", dest="bench.>"),
                    **STREAM_LIMITS,
                )
            )
            probe = await edge_nc.subscribe("bench.probe")  # published until it arrives
            deadline = time.monotonic() + 15
            while True:
                await js.publish("in.probe", b"{}")
                with contextlib.suppress(TimeoutError):
                    await probe.next_msg(timeout=0.5)
                    return
                if time.monotonic() > deadline:
                    raise BenchFailed("the leaf node never received the stream's republish")
        finally:
            await hub_nc.close()
            await edge_nc.close()

    def publisher_options(self) -> dict[str, Any]:
        assert self.hub is not None
        return {"backend": self.backend, "url": self.hub.url, "stream": self.stream}

    def stop(self) -> None:
        super().stop()
        if self.hub is not None:
            self.hub.stop()
            self.hub = None


class SocketIO(System):
    backend, proto = "redis", "sio"

    def __init__(self, *args: Any, publisher: str = "c", **kw: Any):
        super().__init__(*args, **kw)
        if publisher not in REDIS_PUBLISHERS:
            raise BenchFailed(f"unknown publisher {publisher!r}; choose from c, python")
        self.publisher = publisher
        self.publisher_label = REDIS_PUBLISHERS[publisher]

    def server_argv(self, port: int, redis_port: int) -> list[str]:
        raise NotImplementedError

    def start(self, layout: Layout) -> None:
        self.redis_port = self._redis()
        self.port = free_port()
        child = self._child(
            self.server_argv(self.port, self.redis_port),
            core=self.server_core,
            log=f"{self.name}.log",
        )
        self.server_pids.append(child.pid)
        ready = child.read(timeout=30)
        if ready.get("event") != "ready":
            raise BenchFailed(f"{self.name} did not start: {ready}")

    def spec(self, client: int, layout: Layout) -> str:
        return orjson.dumps({"room": f"t{layout.room_of(client)}", "user": f"u{client}"}).decode()

    def publisher_options(self) -> dict[str, Any]:
        return {"backend": self.backend, "port": self.redis_port}


class SocketIONode(SocketIO):
    name = "socketio-node"

    def server_argv(self, port: int, redis_port: int) -> list[str]:
        script = peers_dir() / "sio_node.js"
        if not (script.parent / "node_modules" / "socket.io").is_dir():
            raise BenchFailed("socket.io is not installed: run benchmarks/peers/setup.sh")
        return ["node", str(script), str(port), str(redis_port)]


class SocketIOPy(SocketIO):
    name = "socketio-py"

    def server_argv(self, port: int, redis_port: int) -> list[str]:
        return [sys.executable, str(peers_dir() / "sio_py.py"), str(port), str(redis_port)]


def receiver_argv(system: System, wsload: Path) -> list[str]:
    """How to start one load-client process of ``system`` (its protocol and port follow)."""
    if system.receiver == "c":
        return [str(wsload)]
    script = peers_dir() / "recv.js"
    module = "@nats-io/nats-core" if system.proto == "nats" else "socket.io-client"
    if not (script.parent / "node_modules" / module).is_dir():
        raise BenchFailed(f"{module} is not installed: run benchmarks/peers/setup.sh")
    return ["node", str(script)]


def make(name: str, workdir: Path, **kw: Any) -> System:
    """A system by name; ``tidings@c`` / ``tidings@python`` override the ``publisher`` option,
    a ``:node`` suffix on a peer receives with its official Node client."""
    full = name
    name, _, receiver = name.partition(":")
    if receiver not in ("", *RECEIVERS):
        raise BenchFailed(f"unknown receiver {receiver!r} in {full!r}; choose from node")
    base, _, publisher = name.partition("@")
    if base == "tidings":
        if receiver == "node":
            raise BenchFailed("the Node cross-check receiver speaks the peers' protocols only")
        if publisher:
            kw["publisher"] = publisher
        return Tidings(workdir, name=name, **kw)
    extra = {k: v for k, v in kw.items() if k not in ("storage", "window", "publisher")}
    if publisher:  # nats@python, socketio-node@python: the Python publisher (default: jspub)
        extra["publisher"] = publisher
        name = base
    classes: dict[str, type[System]] = {
        "nats": NatsNative,
        "nats-js": NatsJetStream,
        "socketio-node": SocketIONode,
        "socketio-py": SocketIOPy,
    }
    if name not in classes:
        raise BenchFailed(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    system = classes[name](workdir, **extra)
    system.name = full
    if receiver:
        system.receiver = receiver
    return system
