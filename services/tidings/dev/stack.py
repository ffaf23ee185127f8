"""`tidings dev`: real nats-servers, the stream, the services as supervised children, and nginx.

One nats-server by default; ``--nats-cluster 3`` clusters three (:mod:`tidings.dev.cluster`) and
puts the stream at R3. With several gateways a real nginx fronts them (:mod:`tidings.dev.ingress`).

The supervisor restarts a child that dies and stops everything by PID on SIGINT/SIGTERM, so
nothing outlives it. The children come from :func:`tidings.dev.options.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable
from io import TextIOWrapper
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from tidings.dev.child import Child
from tidings.dev.cluster import NatsCluster
from tidings.dev.embedded import EmbeddedNats
from tidings.dev.info import INFO_FILE, ensure_secret, mint_dev_token, read_info, write_json
from tidings.dev.ingress import Nginx, Upstream
from tidings.dev.options import DevOptions, ServiceSpec, services
from tidings.errors import DevConflict, StartFailed, TidingsError
from tidings.nats import ProvisionReport, provision
from tidings.ports import port_in_use
from tidings.settings import Settings

Log = Callable[[str], None]


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while the stack was starting."""


class DevStack:
    """nats-server plus the services, started together, supervised, and stopped together."""

    def __init__(
        self, options: DevOptions, settings: Settings, *, stop: threading.Event, log: Log
    ) -> None:
        self.options = options
        self.settings = settings
        self.stop_event = stop
        self.log = log
        self.dir = options.dir.resolve()
        self.cluster: NatsCluster | None = None
        self.nats_nodes: list[EmbeddedNats] = []  # made once the dev dir's lock is held
        self.ingress: Nginx | None = None
        if options.with_ingress:
            upstreams = [Upstream(p, a, options.host) for p, a in options.gateway_ports]
            self.ingress = Nginx(
                self.dir / "ingress", upstreams, host=options.host, port=options.ingress_port
            )
        self.children: list[Child] = []
        self.info: dict[str, Any] = {}
        self.report: ProvisionReport | None = None
        self._lock: TextIOWrapper | None = None

    @property
    def info_path(self) -> Path:
        return self.dir / INFO_FILE

    def start(self) -> dict[str, Any]:
        """Start everything and write ``dev.json``; on any failure, stop what started."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> dict[str, Any]:
        opts = self.options
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        secret = ensure_secret(self.settings.auth, self.dir)
        token = mint_dev_token(
            self.settings.auth,
            secret,
            tenant=opts.tenant,
            user=opts.user,
            roles=opts.roles,
            rooms=opts.rooms,
            ttl=opts.token_ttl,
        )
        specs = services(dataclasses.replace(opts, dir=self.dir), secret=secret)
        self._make_nats()
        self._check_ports(self._wanted_ports(specs))
        (self.dir / "logs").mkdir(exist_ok=True)
        for node in self.nats_nodes:
            single = self.cluster is None
            node.log_file = (
                self.dir / "logs" / ("nats-server.log" if single else f"{node.name}.log")
            )
            node.start()
        stream = self.settings.stream
        if self.cluster is not None:
            asyncio.run(self.cluster.wait_ready(timeout=opts.ready_timeout))
            stream = stream.model_copy(update={"replicas": min(opts.nats_cluster, 3)})
        urls = [node.url for node in self.nats_nodes]
        nats_settings = self.settings.nats.model_copy(update={"urls": urls})
        self.report = asyncio.run(provision(nats_settings, stream))
        asyncio.run(_migrate_inbox(opts.inbox_database_url))
        self.children = [Child(spec, self.dir / "logs") for spec in specs]
        for child in self.children:
            child.start()
        for child in self.children:
            self._wait_ready(child)
        if self.ingress is not None:
            self.ingress.start()
        self.info = {
            "nats": {"url": ",".join(urls)},
            **{c.spec.name: {"url": c.spec.url, **c.spec.info} for c in self.children},
            **self._ingress_info(),
            "token": token,
            "claims": {
                "tenant": opts.tenant,
                "user": opts.user,
                "roles": list(opts.roles),
                "rooms": list(opts.rooms),
            },
            "dir": str(self.dir),
        }
        self._write_info()
        return self.info

    def _make_nats(self) -> None:
        """One nats-server, or a cluster (it writes its nodes' configs: only under the lock)."""
        opts = self.options
        if opts.nats_cluster > 1:
            self.cluster = NatsCluster(
                self.dir / "nats-cluster",
                size=opts.nats_cluster,
                host=opts.host,
                ports=opts.nats_ports,
            )
            self.nats_nodes = self.cluster.nodes
        else:
            self.nats_nodes = [EmbeddedNats(self.dir / "nats", port=opts.nats_port, host=opts.host)]

    def _wanted_ports(self, specs: list[ServiceSpec]) -> list[tuple[str, str, int]]:
        opts = self.options
        wanted = [(f"nats-{node.name}", "--nats-port", node.port) for node in self.nats_nodes]
        if self.cluster is None:
            wanted = [("NATS", "--nats-port", opts.nats_port)]
        wanted += [(s.name, s.flag, s.port) for s in specs]
        wanted += [
            (f"{opts.gateway_name(i)} API", "--gateway-api-port", api)
            for i, (_, api) in enumerate(opts.gateway_ports)
        ]
        wanted += [
            (
                f"{opts.gateway_name(i)} metrics",
                "--gateway-metrics-port",
                opts.gateway_metrics_port + 100 * i,
            )
            for i in range(opts.gateways)
        ]
        if self.ingress is not None:
            wanted.append(("ingress", "--ingress-port", self.ingress.port))
        return wanted

    def _ingress_info(self) -> dict[str, Any]:
        if self.ingress is None:
            return {}
        i = self.ingress
        return {"ingress": {"url": i.url, "ws": i.ws_url, "api": i.api_url}}

    def _take_lock(self) -> None:
        lock = (self.dir / "dev.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise DevConflict(
                f"another `tidings dev` is running with --dir {self.dir}; stop it or use another"
                " --dir"
            ) from None
        self._lock = lock

    def _check_ports(self, wanted: list[tuple[str, str, int]]) -> None:
        seen: dict[int, str] = {}
        for name, flag, port in wanted:
            if port in seen:
                raise DevConflict(
                    f"{name} and {seen[port]} both want port {port}; change it with {flag}"
                )
            seen[port] = name
            if port_in_use(port, self.options.host):
                raise DevConflict(
                    f"port {port} ({name}) is already in use on {self.options.host};"
                    f" choose another with {flag}{self._leftover_hint(name)}"
                )

    def _leftover_hint(self, name: str) -> str:
        # We hold the lock, so a dev.json here is from a `tidings dev` that was killed outright.
        pid = ((read_info(self.dir) or {}).get("pids") or {}).get(name.lower())
        return f" (a killed `tidings dev` may have left pid {pid} running)" if pid else ""

    def _wait_ready(self, child: Child) -> None:
        url = child.spec.url + child.spec.ready_path
        deadline = time.monotonic() + self.options.ready_timeout
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.stop_event.is_set():
                    raise Interrupted
                code = child.poll()
                if code is not None:
                    raise StartFailed(
                        f"{child.spec.name} exited with code {code} before it was ready;"
                        f" end of {child.log_path}:\n{child.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                self.stop_event.wait(0.1)
        raise StartFailed(
            f"{child.spec.name} was not ready at {url} after {self.options.ready_timeout:.0f}s;"
            f" end of {child.log_path}:\n{child.log_tail()}"
        )

    def _write_info(self) -> None:
        pids = {"supervisor": os.getpid()}
        for node in self.nats_nodes:
            if node.process is not None:
                pids["nats" if self.cluster is None else f"nats-{node.name}"] = node.process.pid
        if self.ingress is not None and self.ingress.pid is not None:
            pids["ingress"] = self.ingress.pid
        pids.update({c.spec.name: c.pid for c in self.children if c.pid is not None})
        self.info["pids"] = pids
        write_json(self.info_path, self.info)

    def supervise(self, *, tick: float = 0.2) -> None:
        """Restart whatever dies unexpectedly, until SIGINT/SIGTERM sets the stop event."""
        while not self.stop_event.wait(tick):
            for node in self.nats_nodes:
                if not node.running:
                    self.log(f"nats-server exited unexpectedly; restarting on port {node.port}")
                    self._restart(node.start, "nats-server")
            for child in self.children:
                self._check_child(child)
            if self.ingress is not None and not self.ingress.running:
                self.log(f"nginx exited unexpectedly (log: {self.ingress.log_path}); restarting")
                self._restart(self.ingress.start, "nginx")

    def _restart(self, start: Callable[[], object], what: str) -> None:
        try:
            start()
        except TidingsError as exc:
            self.log(f"{what} did not restart: {exc.reason}")
            return
        self._write_info()

    def _check_child(self, child: Child) -> None:
        code = child.poll()
        if code is None:
            return
        now = time.monotonic()
        if child.restart_at is None:
            # Back off when it keeps dying right after a start (a crash loop), else restart now.
            uptime = now - child.started_at
            child.backoff = 0.0 if uptime > 10 else min(max(child.backoff * 2, 0.5), 10.0)
            child.restart_at = now + child.backoff
            self.log(
                f"{child.spec.name} (pid {child.pid}) exited with code {code};"
                f" restarting in {child.backoff:.1f}s (log: {child.log_path})"
            )
        if now >= child.restart_at:
            child.start()
            self.log(f"{child.spec.name} restarted (pid {child.pid})")
            self._write_info()

    def close(self) -> None:
        """Stop nginx, the children (SIGTERM, SIGKILL after the grace period), then NATS."""
        if self.ingress is not None:
            self.ingress.stop(timeout=self.options.stop_timeout)
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + self.options.stop_timeout
        for child in self.children:
            child.reap(deadline - time.monotonic())
        for node in self.nats_nodes:
            node.send(signal.SIGCONT)  # a frozen node would not see its SIGTERM
            node.stop(timeout=self.options.stop_timeout)
        if self.info:  # only the dev.json this stack wrote (a stale one names leftover pids)
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


async def _migrate_inbox(url: str) -> None:
    """Bring the dev inbox (SQLite) to this version's schema before the writer and the API
    start: two processes migrating one new file at once would race."""
    from tidings.inbox import migrate
    from tidings.inbox.store import Store

    store = Store.open(url)
    try:
        await migrate.upgrade(store.engine)
    finally:
        await store.close()


def run(
    options: DevOptions,
    settings: Settings,
    *,
    log: Log,
    ready: Callable[[DevStack], None],
) -> None:
    """Start the stack, announce it, supervise it until a stop signal, then stop it all."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGHUP too: closing the terminal must stop the stack as Ctrl-C does.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    stack = DevStack(options, settings, stop=stop, log=log)
    try:
        stack.start()
        ready(stack)
        stack.supervise()
    except Interrupted:
        pass
    finally:
        stack.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
