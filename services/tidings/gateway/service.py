"""A gateway process: its parts wired together, and one lifecycle (start, serve, drain, stop).

``Gateway.run()`` starts everything, serves until SIGTERM/SIGINT, drains (readiness false,
``reconnect`` frames spread over the drain period, close 1012) and exits. Each part takes only
what it uses (the registry, the hub, the live side); the long-running ones (the NATS link and
its heal, expiry, keepalive, the API server, the collector) run under one supervisor, and the
first that dies stops the process with an error instead of leaving it half alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from picows import ws_create_server

from tidings.auth import Verifier
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import PartFailed, TidingsError, Unavailable
from tidings.gateway import loop as event_loop
from tidings.gateway.admin import Admin
from tidings.gateway.audit import Audit
from tidings.gateway.collector import Collector
from tidings.gateway.connect_rate import ConnectRate
from tidings.gateway.connection import Connection
from tidings.gateway.fanout import Hub
from tidings.gateway.headguard import guard
from tidings.gateway.heal import HealWatch, close_all, send_away
from tidings.gateway.inbox import Inbox
from tidings.gateway.listener import CLOSE_TIMEOUT, SessionDeps, shed
from tidings.gateway.live import Live
from tidings.gateway.metrics import GatewayMetrics
from tidings.gateway.openapi import openapi_route
from tidings.gateway.quota_admin import QuotaAdmin
from tidings.gateway.registry import Registry
from tidings.gateway.resume import Resume
from tidings.gateway.retry import until_answered
from tidings.gateway.revoke import RevocationBucket, RevocationList
from tidings.gateway.routes import ApiServer, Pages, Routes, api_app, metrics_app
from tidings.gateway.session import Session
from tidings.gateway.status import ClusterStatus
from tidings.gateway.upkeep import Expiry, Keepalive
from tidings.gateway.user_limit import UserLimit
from tidings.lifecycle import Supervisor, spawn
from tidings.nats import stream_epoch
from tidings.nats_link import NatsLink
from tidings.quotas.bucket import QuotaBucket
from tidings.settings import Settings
from tidings.telemetry import setup_logging, setup_tracing

log = logging.getLogger(__name__)


class Gateway:
    """Everything one gateway process holds; ``pages`` serves ``/demo`` (development only)."""

    def __init__(self, settings: Settings, *, pages: Pages | None = None) -> None:
        self.settings = settings
        gs = settings.gateway
        self.id = gs.id or f"{socket.gethostname()}-{os.getpid()}"
        self.pages = pages
        self.registry = Registry()
        self.hub = Hub(
            window=gs.batch_window,
            window_max=gs.batch_window_max,
            on_slow=self._shed,
            presence=self.registry.presence,
        )
        self.verifier = Verifier(settings.auth)
        self.metrics = GatewayMetrics(self.registry, self.hub, dropped=self._dropped)
        self.collector = Collector(lambda: self.registry.accepted)
        self.audit = Audit(self.metrics.registry, tenant_claim=settings.auth.tenant_claim)
        self.revocations = RevocationList(
            self.registry, max_lifetime=settings.auth.max_token_lifetime
        )
        self.bucket = RevocationBucket(self.revocations, stream=settings.stream.name)
        self.admin = Admin(
            gs,
            gateway_id=self.id,
            verifier=self.verifier,
            revocations=self.revocations,
            bucket=self.bucket,
            presence=self.registry.presence,
            audit=self.audit,
            auth_failures=self.metrics.auth_failures,
            nats=lambda: self.link.client,
            js=lambda: self.link.js,
        )
        self.quota_admin = QuotaAdmin(
            self.admin,
            audit=self.audit,
            bucket=QuotaBucket(stream=settings.stream.name),
            defaults=settings.quota,
            js=lambda: self.link.js,
            like=lambda: self.stream_config,
            timeout=settings.nats.request_timeout,
        )
        self.stream_config: StreamConfig | None = None
        self.users: UserLimit | None = None  # TIDINGS_GATEWAY_USER_CONNECTIONS only
        if gs.user_connections:
            self.users = UserLimit(self.id, self.registry.presence, limit=gs.user_connections)
        self.expiry = Expiry(self.registry)
        self.keepalive = Keepalive(self.registry, interval=gs.ping_interval)
        self.status = ClusterStatus(self.id, self.hub, timeout=gs.status_timeout)
        self.heal_watch = HealWatch(self.registry, timeout=gs.heal_timeout)
        self.link = NatsLink(settings.nats, service="gateway")
        self.supervisor = Supervisor()
        self.live: Live | None = None
        self.resume: Resume | None = None
        self.inbox: Inbox | None = None  # with TIDINGS_GATEWAY_INBOX only
        self.deps: SessionDeps | None = None  # what sessions use, once started
        self.epoch = ""
        self.server: asyncio.Server | None = None
        self.api: ApiServer | None = None
        self.metrics_server: ApiServer | None = None
        self._bound: NATS | None = None  # the client the live side subscribed on
        self._stopped = asyncio.Event()

    # -- start / stop --------------------------------------------------------------------------

    async def start(self) -> None:
        settings, gs, link = self.settings, self.settings.gateway, self.link
        self.supervisor.start(link)
        await self.supervisor.watch(link.wait_connected())
        # While a lost node's leaderships move JetStream does not answer (seconds): each step
        # below waits that out, up to the heal timeout, instead of failing the start.
        try:
            info = await until_answered(
                lambda: link.js.stream_info(settings.stream.name),
                within=gs.heal_timeout,
                what="the stream did not answer at start",
            )
        except NotFoundError:
            self.registry.stopping = True
            await self.supervisor.stop()
            raise Unavailable(
                f"stream {settings.stream.name} does not exist; run `tidings nats init` first",
                field="TIDINGS_STREAM_NAME",
            ) from None
        self.epoch = stream_epoch(info)
        self.stream_config = info.config
        nc = self._bound = link.client
        # The revocation list is loaded before the first connection is served.
        await until_answered(
            lambda: self.bucket.ensure(link.js, like=info.config),
            within=gs.heal_timeout,
            what="the revocation bucket did not answer at start",
        )
        await until_answered(
            lambda: self.bucket.follow(link.js, settings.nats.request_timeout),
            within=gs.heal_timeout,
            what="revocations not loaded yet",
        )
        live = self.live = Live.from_settings(
            nc, link.js, self.hub, settings, on_delivered=self.metrics.latency.observe
        )
        await live.start()
        await self.status.listen(nc)
        await self.admin.listen(nc)
        if self.users is not None:
            await self.users.listen(nc)  # the others' counts before the first hello
            self.supervisor.start(self.users)
        self.registry.nats_connected = True
        self.registry.set_healed(True)
        resume = self.resume = Resume(
            live,
            self.hub,
            self.registry,
            epoch=self.epoch,
            outcomes=self.metrics.resumes,
            heal_timeout=gs.heal_timeout,
        )
        link.on_down(resume.lost)
        link.on_up(self._nats_back)
        self.supervisor.start(self.expiry)
        self.supervisor.start(self.keepalive)
        self.supervisor.start(self.heal_watch)
        if gs.inbox:
            self.inbox = Inbox(
                nc,
                timeout=gs.inbox_timeout,
                linger=gs.interest_linger,
                session_failures=self.metrics.inbox_session_failures,
                changes_dropped=self.metrics.inbox_changes_dropped,
                frames=self.metrics.inbox_frames,
            )
        deps = self.deps = SessionDeps(
            gs,
            self.registry,
            self.hub,
            self.verifier,
            resume,
            self.expiry,
            self.metrics.auth_failures,
            self._shed,
            self.inbox,
            ConnectRate(rate=gs.connect_rate_per_tenant, burst=gs.connect_burst_per_tenant),
            self.metrics.connects_refused,
            self.revocations,
            self.audit,
        )
        routes = Routes(
            gs,
            self.registry,
            session=lambda: Session(deps, self.users),
            api_port=lambda: self.api_port,
            metrics_port=lambda: self.metrics_port,
            pages=self.pages,
        )
        try:
            self.server = await ws_create_server(
                routes,
                gs.host,
                gs.port,
                websocket_handshake_timeout=gs.hello_timeout,
                backlog=gs.backlog,  # asyncio's default, 100, overflows in a reconnect storm
                # Frames up to 4x the limit reach the session, which refuses them with a
                # `too_large` error frame; bigger ones are cut off by picows itself (1009).
                max_frame_size=4 * gs.max_frame_bytes,
                # Its default is 16 KB; picows grows it on demand and keeps at least 2 KB.
                read_buffer_init_size=2048,
                use_aiofastnet=False,  # measured: +4.8 KB per idle connection, no speed gained
                # An adapter, not a logger: picows makes a child Logger per connection of a
                # Logger it is given (~0.6 KB each, kept as long as the connection); quiet below
                # WARNING (telemetry).
                logger_name=logging.LoggerAdapter(logging.getLogger("picows.gateway")),
                start_serving=False,  # the head guard goes in front first
            )
        except OSError as exc:
            await self._cannot_listen(exc)
        per_ip = ConnectRate(rate=gs.connect_rate_per_ip, burst=gs.connect_burst_per_ip)
        refused = self.metrics.connects_refused.labels("ip")
        # The API and metrics ports first: once /readyz answers on the data port, every port
        # of the gateway does (a scrape right after readiness found the metrics port closed).
        await self._start_api()
        try:
            await guard(self.server, per_ip=per_ip, on_refused=refused.inc).start_serving()
        except OSError as exc:  # another socket bound the port too and listened first
            await self._cannot_listen(exc)
        log.info(
            "gateway listening",
            extra={"address": f"{gs.host}:{self.port}", "id": self.id, "epoch": self.epoch},
        )

    async def _cannot_listen(self, exc: OSError) -> NoReturn:
        """Let go of what is up already (NATS, the other ports) and name the setting."""
        gs = self.settings.gateway
        await self.stop()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        reason = f"cannot listen on {gs.host}:{gs.port}: {why}"
        raise Unavailable(reason, field="TIDINGS_GATEWAY_PORT") from exc

    async def _start_api(self) -> None:
        """The API port, then the metrics port (each its own uvicorn server)."""
        gs = self.settings.gateway
        app = api_app(
            self.verifier,
            self.metrics.auth_failures,
            self.cluster_status,
            allowed_origins=gs.allowed_origins,
            extra=[
                *self.admin.routes(),
                *self.quota_admin.routes(),
                openapi_route(max_lifetime=self.settings.auth.max_token_lifetime),
            ],
            on_refused=lambda code, token: self.audit.auth_failed(
                code, where="status", token=token
            ),
            revoked=self.revocations.check,
        )
        api = ApiServer(app, host=gs.host, port=gs.api_port)
        scrape = ApiServer(
            metrics_app(self.metrics.registry),
            host=gs.host,
            port=gs.metrics_port,
            name="metrics-server",
            field="TIDINGS_GATEWAY_METRICS_PORT",
        )
        for server in (api, scrape):
            try:
                await server.open()
            except Unavailable:
                await self.stop()  # the data port and NATS are up already: let go of them
                raise
            self.supervisor.start(server)
        self.api, self.metrics_server = api, scrape

    @property
    def port(self) -> int:
        """The data port (``/ws``, probes), as bound."""
        assert self.server is not None
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.gateway.port

    @property
    def api_port(self) -> int:
        """The API port, as bound."""
        assert self.api is not None
        return self.api.port

    @property
    def metrics_port(self) -> int:
        """The metrics port (``/metrics``), as bound."""
        assert self.metrics_server is not None
        return self.metrics_server.port

    async def stop(self) -> None:
        self.registry.stopping = True
        if self.server is not None:
            self.server.close()  # no new connections; the open ones are closed below
        for session in self.registry.members():
            with contextlib.suppress(Exception):
                session.refuse(ErrorCode.RESTARTING)
        await self._wait_closed()
        if self.users is not None:
            await self.users.close()
        await self.bucket.stop()
        if self.inbox is not None:
            await self.inbox.close()  # tenant refreshes under way
        await self.supervisor.stop()  # the API server, the loops, then the NATS link
        await self.verifier.aclose()
        self._stopped.set()

    async def _wait_closed(self) -> None:
        """Give closing connections the close timeout to answer, then cut the rest."""
        if self.registry.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registry.drained.wait(), CLOSE_TIMEOUT + 0.5)
        for session in self.registry.members():
            session.cut()
        await asyncio.sleep(0)  # let the transports report their close

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain and stop; stop at once if a part dies."""
        await self.start()
        # A process of its own: hide the long-lived objects from the cyclic collector.
        self.collector.start()
        self.supervisor.start(self.collector)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.supervisor.watch(stop.wait())
        except PartFailed:
            await self.stop()
            raise
        await self.drain()
        await self.stop()

    # -- drain ---------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Readiness goes false; every client is told to reconnect after its own delay, spread
        over the drain period so they do not all land on the other gateways at once; whoever
        is still connected at the end is closed with 1012."""
        registry = self.registry
        registry.draining = True
        period = self.settings.gateway.drain_seconds
        sessions = registry.members()
        log.info("draining", extra={"connections": len(sessions), "seconds": period})
        # Leave the last fifth for reconnects that were told late.
        send_away(sessions, spread=period * 0.8, reason="draining")
        if registry.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(registry.drained.wait(), period)
        close_all(registry.members(), code=CloseCode.SERVICE_RESTART, error=ErrorCode.RESTARTING)

    # -- wiring --------------------------------------------------------------------------------

    def _shed(self, conn: Connection) -> None:
        shed(conn, self.hub, self.metrics.slow_consumers)

    def _dropped(self) -> Mapping[str, int] | None:
        return None if self.live is None else self.live.drops.counts

    async def cluster_status(self, tenant: str, user: str) -> dict[str, Any]:
        """Connection counts of ``tenant`` and ``user`` summed over every gateway."""
        return await self.status.ask(self.link.client, tenant, user)

    async def _nats_back(self) -> None:
        """A step of the NATS link after every reconnect (retried until it succeeds): re-arm
        the live side (subscribe anew on a new client), then resume every syncing connection.
        Only then is the gateway healed (ready again); a JetStream timeout here (a stream
        leader election) fails the step, and the link runs it again."""
        assert self.live is not None
        assert self.resume is not None
        self.registry.nats_connected = True
        log.info("NATS reconnected; healing connections")
        nc = self.link.client
        if nc is not self._bound:
            await self.live.rebind(nc, self.link.js)
            await self.status.listen(nc)
            await self.admin.listen(nc)
            if self.users is not None:
                await self.users.listen(nc)
            if self.inbox is not None:
                await self.inbox.rebind(nc)
            self._bound = nc
        else:
            await nc.flush()
            await self.live.rearm_all()
            if self.users is not None:
                await self.users.resync()  # counts missed while away: every full table again
        # Revocations made while NATS was away (on a majority this gateway could not reach):
        # loaded again in the background, retried; the heal does not wait for it.
        spawn(self.bucket.refollow(self.link, self.settings.nats.request_timeout))
        self.resume.heal()
        if self.inbox is not None:
            # Changes published while NATS was away were missed: every user here gets its
            # counts again (best effort, in the background: the heal does not wait on the API).
            spawn(self.inbox.refresh())


def serve_gateway(settings: Settings, *, pages: Pages | None = None) -> None:
    """Blocking entry point of ``tidings gateway``; ``pages`` serves ``/demo`` (dev only)."""
    setup_logging(settings.log)
    setup_tracing(settings.telemetry, process="gateway")
    try:
        event_loop.run(Gateway(settings, pages=pages).run())  # uvloop when installed
    except PartFailed as exc:
        log.error("gateway stopped: %s", exc.reason)
        print(f"tidings gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except TidingsError as exc:
        log.error("gateway cannot start: %s", exc.reason, extra={"field": exc.field})
        print(f"tidings gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
