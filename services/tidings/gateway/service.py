"""A gateway process: NATS, the hub, sessions, resume/heal, drain — one lifecycle.

``Gateway.run()`` starts everything, serves until SIGTERM/SIGINT, drains (readiness false,
``reconnect`` frames spread over the drain period, close 1012) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import orjson
import uvicorn
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from picows import ws_create_server

from tidings import protocol as p
from tidings.auth import Claims, Verifier
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import TidingsError, Unavailable
from tidings.gateway.collector import Collector
from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import BROADCAST_TENANT, Hub
from tidings.gateway.live import Live
from tidings.gateway.metrics import GatewayMetrics
from tidings.gateway.routes import Routes, api_app
from tidings.gateway.session import CLOSE_TIMEOUT, Session, spawn
from tidings.nats import connect, stream_epoch
from tidings.settings import Settings
from tidings.telemetry import setup_logging, setup_tracing

log = logging.getLogger(__name__)

STATUS_SUBJECT = "tidings.gateway.status"


class Expiry:
    """Closes connections whose token expired without a refresh (4401); one heap, one timer."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self._heap: list[tuple[float, int, Connection]] = []
        self._n = 0

    def watch(self, conn: Connection) -> None:
        if conn.expires_at is not None:
            self._n += 1
            heapq.heappush(self._heap, (conn.expires_at, self._n, conn))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                at, _, conn = heapq.heappop(self._heap)
                session = self.gw.sessions.get(conn)
                if session is not None and conn.expires_at == at:
                    session.refuse(ErrorCode.TOKEN_EXPIRED)


class Keepalive:
    """Pings every connection from one loop, spread over the interval (no task per connection).

    Any frame from a client counts as a sign of life (``Session.seen``); one that stayed silent
    for two intervals — no pong to two pings — is closed (1011).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def run(self) -> None:
        interval = self.gw.settings.gateway.ping_interval
        while True:
            sessions = list(self.gw.sessions.values())
            if not sessions:
                await asyncio.sleep(interval)
                continue
            step = interval / len(sessions)
            for session in sessions:
                self.check(session, interval)
                await asyncio.sleep(step)

    def check(self, session: Session, interval: float) -> None:
        transport = session.transport
        if transport is None or session.conn.state not in (State.LIVE, State.SYNCING):
            return
        if time.monotonic() - session.seen > 2 * interval:
            session.close(int(CloseCode.INTERNAL_ERROR), "keepalive ping timeout")
        else:
            transport.send_ping()


class Gateway:
    """Everything one gateway process holds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        gs = settings.gateway
        self.id = gs.id or f"{socket.gethostname()}-{os.getpid()}"
        self.hub = Hub(
            window=gs.batch_window,
            on_slow=self.on_slow,
            on_tenant_added=self._tenant_added,
            on_tenant_removed=self._tenant_removed,
        )
        self.verifier = Verifier(settings.auth)
        self.metrics = GatewayMetrics(lambda: self)
        self.sessions: dict[Connection, Session] = {}
        self.accepted = 0  # WebSocket connections accepted so far
        self.collector = Collector(lambda: self.accepted)
        self.expiry = Expiry(self)
        self.keepalive = Keepalive(self)
        self.routes = Routes(self)
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.live: Live | None = None
        self.epoch = ""
        self.draining = False
        self.nats_connected = False
        self.generation = 0  # bumped on every NATS disconnect
        self.stopping = False
        self.server: asyncio.Server | None = None
        self.api: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self.drained = asyncio.Event()  # set when the last session ends draining/stopping

    # -- start / stop --------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        self.nc = await connect(
            settings.nats,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self.nats_connected = True
        self.js = self.nc.jetstream(timeout=settings.nats.request_timeout)
        try:
            info = await self.js.stream_info(settings.stream.name)
        except NotFoundError:
            self.stopping = True
            await self.nc.close()
            raise Unavailable(
                f"stream {settings.stream.name} does not exist; run `tidings nats init` first",
                field="TIDINGS_STREAM_NAME",
            ) from None
        self.epoch = stream_epoch(info)
        gs = settings.gateway
        self.live = Live.from_settings(
            self.nc, self.js, self.hub, settings, on_delivered=self._on_delivered
        )
        await self.live.start()
        await self.nc.subscribe(STATUS_SUBJECT, cb=self._on_status_request)
        self._tasks.append(asyncio.ensure_future(self.expiry.run()))
        self._tasks.append(asyncio.ensure_future(self.keepalive.run()))
        self.server = await ws_create_server(
            self.routes,
            gs.host,
            gs.port,
            websocket_handshake_timeout=gs.hello_timeout,
            # Frames up to 4x the limit reach the session, which refuses them with a
            # `too_large` error frame; bigger ones are cut off by picows itself (1009).
            max_frame_size=4 * gs.max_frame_bytes,
            read_buffer_init_size=1024,  # grows on demand; most connections only listen
            use_aiofastnet=False,  # measured: +4.8 KB per idle connection, no speed gained
            logger_name="gateway",  # picows.gateway.<fd>; quiet below WARNING (telemetry)
        )
        await self._start_api()
        log.info(
            "gateway listening",
            extra={"address": f"{gs.host}:{self.port}", "id": self.id, "epoch": self.epoch},
        )

    async def _start_api(self) -> None:
        """The API port (Starlette on uvicorn, in this event loop; signals stay ours)."""
        gs = self.settings.gateway
        config = uvicorn.Config(
            api_app(self),
            host=gs.host,
            port=gs.api_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        config.load()
        self.api = uvicorn.Server(config)
        # What `Server.serve()` does minus its signal handlers, which would replace ours.
        self.api.lifespan = config.lifespan_class(config)
        try:
            await self.api.startup()
        except SystemExit:  # uvicorn logged why (e.g. the port is taken)
            self.api = None
            await self.stop()  # the data port and NATS are up already: let go of them
            raise Unavailable(
                f"cannot listen on {gs.host}:{gs.api_port}", field="TIDINGS_GATEWAY_API_PORT"
            ) from None
        self._tasks.append(asyncio.ensure_future(self.api.main_loop()))

    @property
    def port(self) -> int:
        """The data port (``/ws``, probes, metrics), as bound."""
        assert self.server is not None
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.gateway.port

    @property
    def api_port(self) -> int:
        """The API port, as bound."""
        assert self.api is not None
        for server in self.api.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.settings.gateway.api_port

    async def stop(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.close()  # no new connections; the open ones are closed below
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                session.refuse(ErrorCode.RESTARTING)
        await self._wait_closed()
        if self.api is not None:
            self.api.should_exit = True
            with contextlib.suppress(Exception):
                await self.api.shutdown()
        for task in self._tasks:
            task.cancel()
        await self.verifier.aclose()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        self._stopped.set()

    async def _wait_closed(self) -> None:
        """Give closing connections the close timeout to answer, then cut the rest."""
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), CLOSE_TIMEOUT + 0.5)
        for session in list(self.sessions.values()):
            if session.transport is not None:
                session.transport.disconnect(graceful=False)
        await asyncio.sleep(0)  # let the transports report their close

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain and stop."""
        await self.start()
        # A process of its own: hide the long-lived objects from the cyclic collector.
        self.collector.start()
        self._tasks.append(asyncio.ensure_future(self.collector.run()))
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.drain()
        await self.stop()

    # -- drain ---------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Readiness goes false; every client is told to reconnect after its own delay, spread
        over the drain period so they do not all land on the other gateways at once; whoever
        is still connected at the end is closed with 1012."""
        self.draining = True
        period = self.settings.gateway.drain_seconds
        sessions = list(self.sessions.values())
        log.info("draining", extra={"connections": len(sessions), "seconds": period})
        spread = period * 0.8  # leave the last fifth for reconnects that were told late
        for i, session in enumerate(sessions):
            conn = session.conn
            if conn.state in (State.LIVE, State.SYNCING):
                delay_ms = int(spread * 1000 * i / max(1, len(sessions)))
                conn.write_control(p.encode(p.ReconnectFrame(delay_ms=delay_ms)))
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), period)
        for session in list(self.sessions.values()):
            session.conn.move(State.DRAINING)
            session.close(int(CloseCode.SERVICE_RESTART), ErrorCode.RESTARTING.value)

    # -- connections ---------------------------------------------------------------------------

    def on_slow(self, conn: Connection) -> None:
        """Close a connection that cannot keep up (1013); it resumes from its last seq."""
        if conn.state is State.CLOSED:
            return
        self.metrics.slow_consumers.inc()
        conn.move(State.CLOSED)
        self.hub.remove(conn)
        conn.sink.close(int(CloseCode.TRY_AGAIN_LATER), ErrorCode.SLOW_CONSUMER.value)

    def _tenant_added(self, tenant: str) -> None:
        if self.live is not None:
            self.live.tenant_added(tenant)

    def _tenant_removed(self, tenant: str) -> None:
        if self.live is not None:
            self.live.tenant_removed(tenant)

    def _on_delivered(self, lag: float) -> None:
        self.metrics.latency.observe(lag)  # plain numbers; also counts the notification

    # -- resume and heal -----------------------------------------------------------------------

    async def resync(
        self,
        conn: Connection,
        *,
        since: int | None,
        epoch: str | None,
        claims: Claims,
        first: bool,
    ) -> bool:
        """Bring a SYNCING connection up to date and make it LIVE; True when nothing is missing.

        Live frames for it are buffered meanwhile; what JetStream or the window holds after
        ``since`` is written first, then the buffer without what was already written.
        """
        assert self.live is not None
        live = self.live
        generation = self.generation
        recovered = False
        reason = p.ResetReason.OUT_OF_RANGE
        try:
            await live.ensure(conn.tenant)
            if since is not None and epoch == self.epoch:
                had_memory = live.windows[conn.tenant].covers(since) and live.windows[
                    BROADCAST_TENANT
                ].covers(since)
                recovered = await live.cover(conn.tenant, since) and await live.cover(
                    BROADCAST_TENANT, since
                )
                self.metrics.resumes.labels(
                    "not_recovered" if not recovered else "memory" if had_memory else "jetstream"
                ).inc()
            elif since is not None:
                reason = p.ResetReason.EPOCH_CHANGED
                self.metrics.resumes.labels("not_recovered").inc()
        except Exception:
            log.exception("resume failed", extra={"connection": conn.id})
            reason = p.ResetReason.REPLAY_FAILED
            recovered = False
        if conn.state is not State.SYNCING:
            return False  # closed or draining meanwhile
        if generation != self.generation or not self.nats_connected:
            # NATS dropped while this ran: what it read may have a hole. The connection stays
            # syncing and the next heal resumes it from where it really is.
            if first:
                raise Unavailable("NATS connection lost during the resume; retry")
            return False
        # What the fan-out still holds in its batch is in the windows already: let it reach
        # `pending` now, or it would be written again once the connection is live.
        self.hub.flush()
        head = live.head
        if first:
            conn.write_control(
                p.encode(
                    p.Welcome(
                        connection=conn.id,
                        tenant=conn.tenant,
                        user=conn.user,
                        roles=tuple(sorted(claims.roles)),
                        rooms=tuple(sorted(conn.rooms)),
                        seq=head,
                        epoch=self.epoch,
                        recovered=recovered,
                        expires_at=claims.expires_at,
                    )
                )
            )
        if recovered:
            assert since is not None
            conn.last_seq = since
            items = live.windows[conn.tenant].after(since, conn.rooms) + live.windows[
                BROADCAST_TENANT
            ].after(since, conn.rooms)
            items.sort()
            conn.write_items(items)
        elif since is not None or not first:
            conn.write_control(p.encode(p.Reset(seq=head, epoch=self.epoch, reason=reason)))
            conn.last_seq = max(conn.last_seq, head)
        else:
            conn.last_seq = head
        pending, conn.pending = conn.pending, []
        conn.write_items(pending)
        synced = head
        if recovered:
            # Only as far as both of its windows are complete: `head` may be ahead of messages
            # of this tenant still queued in the NATS client, and a client trusts `synced`.
            tenant, everyone = live.windows[conn.tenant], live.windows[BROADCAST_TENANT]
            synced = min(tenant.last_seq, everyone.last_seq)
        conn.write_control(p.encode(p.Synced(seq=max(synced, conn.last_seq))))
        conn.move(State.LIVE)
        return recovered

    async def _on_disconnected(self) -> None:
        """Live messages are at-most-once: from now on nothing held is trusted."""
        self.nats_connected = False
        if self.stopping:
            return
        self.generation += 1  # resyncs started before this point must not go live
        if self.live is not None:
            self.live.disarm_all()
        for conn in list(self.sessions):
            if conn.state is State.LIVE:
                conn.move(State.SYNCING)
        log.warning("NATS disconnected; connections wait for the heal")

    async def _on_reconnected(self) -> None:
        self.nats_connected = True
        if self.live is None or self.nc is None:
            return
        log.info("NATS reconnected; healing connections")
        await self.nc.flush()
        await self.live.rearm_all()
        for conn, session in list(self.sessions.items()):
            if conn.state is State.SYNCING and session.claims is not None:
                spawn(
                    self.resync(
                        conn,
                        since=conn.last_seq,
                        epoch=self.epoch,
                        claims=session.claims,
                        first=False,
                    )
                )

    # -- cluster status ------------------------------------------------------------------------

    def local_counts(self, tenant: str, user: str) -> dict[str, int]:
        conns = self.hub.rooms.get((tenant, f"user:{user}"), {})
        return {"tenant": self.hub.tenants.get(tenant, 0), "user": len(conns)}

    async def _on_status_request(self, msg: Msg) -> None:
        try:
            ask = orjson.loads(msg.data)
            counts = self.local_counts(str(ask["tenant"]), str(ask["user"]))
        except Exception:
            return
        await msg.respond(orjson.dumps({"gateway": self.id, **counts}))

    async def cluster_status(self, tenant: str, user: str) -> dict[str, Any]:
        """Connection counts of ``tenant`` and ``user`` summed over every gateway."""
        assert self.nc is not None
        inbox = self.nc.new_inbox()
        replies: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def on_reply(msg: Msg) -> None:
            with contextlib.suppress(Exception):
                replies.append(orjson.loads(msg.data))

        sub = await self.nc.subscribe(inbox, cb=on_reply)
        try:
            await self.nc.publish(
                STATUS_SUBJECT, orjson.dumps({"tenant": tenant, "user": user}), reply=inbox
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.settings.gateway.status_timeout)
        finally:
            await sub.unsubscribe()
        gateways = {r.get("gateway") for r in replies}
        return {
            "tenant": tenant,
            "user": user,
            "tenant_connections": sum(int(r.get("tenant", 0)) for r in replies),
            "user_connections": sum(int(r.get("user", 0)) for r in replies),
            "gateways": len(gateways),
        }


def serve_gateway(settings: Settings) -> None:
    """Blocking entry point of ``tidings gateway``."""
    setup_logging(settings.log)
    setup_tracing(settings.telemetry, process="gateway")
    try:
        asyncio.run(Gateway(settings).run())
    except TidingsError as exc:
        log.error("gateway cannot start: %s", exc.reason, extra={"field": exc.field})
        print(f"tidings gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
