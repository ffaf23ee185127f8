"""The NATS side of a gateway: interest-based live subscriptions and the recent windows.

A gateway subscribes to ``live.tenant.<t>.>`` only while it hosts a connection of tenant t
(reference-counted by the hub, kept a short while after the last one leaves so a reconnecting
client finds it warm), plus ``live.broadcast.>``. Every live message is decoded and encoded for
the wire once, remembered in its tenant's window, and handed to the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tidings.envelope import Rejected, Severity, WireNotification
from tidings.gateway import direct
from tidings.gateway.fanout import Hub, mute_key
from tidings.gateway.ingest import Drops, wire_line
from tidings.gateway.replay import DIRECT_TIMEOUT, DirectReader, Doubt, read_reach_retrying
from tidings.gateway.stamps import lag, stored_at
from tidings.gateway.window import Entry, Window, entry
from tidings.subjects import BROADCAST_TENANT, LIVE_PREFIX, tenant_filter
from tidings.telemetry import context_from, tracing_enabled

if TYPE_CHECKING:
    from tidings.settings import Settings

_tracer = trace.get_tracer("tidings.gateway")

log = logging.getLogger(__name__)

# Seconds one JetStream API call of a heal (the arm's stream_info, a replay's direct get) may
# take before it is tried again. Each normally answers in milliseconds; during a stream leader
# election (~5 s) the leader does not answer, and a try waiting the whole request timeout would
# add up to that much to the wait of every client after the election.
TRY_TIMEOUT = 1.0


class Live:
    """Subscriptions by interest, the per-tenant windows, and range backfills from JetStream."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        hub: Hub,
        *,
        stream: str,
        window_count: int,
        window_age: float,
        replay_max: int,
        replay_concurrency: int,
        linger: float,
        timeout: float,
        retry_for: float = 0.0,
        on_delivered: Callable[[float], None] = lambda lag: None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.hub = hub
        self.stream = stream
        self.windows: dict[str, Window] = {}
        self.subs: dict[str, Subscription] = {}
        # Per tenant: its subscribe-and-arm under way (a task), failed (kept until re-asked),
        # or done (one shared finished future: a kept task costs ~0.9 KB per tenant).
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._done: asyncio.Future[None] | None = None
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self._reads = 0  # backfills started: each names its direct-get reply subject
        self._inbox = ""  # this gateway's direct-get replies (see _reply_base)
        self._doubt = Doubt()  # a direct get lost lately: every read hedges from its start
        self._replays = asyncio.Semaphore(replay_concurrency)
        self.window_count = window_count
        self.window_age = window_age
        self.replay_max = replay_max
        self.linger = linger
        self.timeout = timeout
        self.retry_for = retry_for  # how long a backfill retries a transient JetStream error
        self.head = 0  # highest stream seq seen or read
        self.on_delivered = on_delivered
        self.drops = Drops()  # stored messages not delivered, by reason
        self.direct = direct.install(nc)  # None: nats-py changed, its own queue path is used
        hub.on_interest(self.tenant_added, self.tenant_removed)  # subscribe by the hub's interest

    @classmethod
    def from_settings(
        cls,
        nc: NATS,
        js: JetStreamContext,
        hub: Hub,
        settings: Settings,
        *,
        on_delivered: Callable[[float], None],
    ) -> Live:
        """The live side as a gateway's settings configure it."""
        gs = settings.gateway
        return cls(
            nc,
            js,
            hub,
            stream=settings.stream.name,
            window_count=gs.replay_max_messages,
            window_age=gs.replay_max_age,
            replay_max=gs.replay_max_messages,
            replay_concurrency=gs.replay_concurrency,
            linger=gs.interest_linger,
            timeout=settings.nats.request_timeout,
            retry_for=gs.heal_timeout,
            on_delivered=on_delivered,
        )

    # -- interest --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ensure(BROADCAST_TENANT)

    def tenant_added(self, tenant: str) -> None:
        handle = self._lingering.pop(tenant, None)
        if handle is not None:
            handle.cancel()
        if tenant not in self._ready:
            self._ready[tenant] = asyncio.ensure_future(self._subscribe(tenant))

    def tenant_removed(self, tenant: str) -> None:
        loop = asyncio.get_running_loop()
        self._lingering[tenant] = loop.call_later(
            self.linger, lambda: asyncio.ensure_future(self._unsubscribe(tenant))
        )

    async def ensure(self, tenant: str) -> Window:
        """Wait until ``tenant``'s live subscription is active and its window armed.

        A subscribe or arm that failed (a JetStream timeout during an election) is not kept as
        the answer: the next caller tries again.
        """
        ready = self._ready.get(tenant)
        if ready is None or (ready.done() and not ready.cancelled() and ready.exception()):
            ready = self._ready[tenant] = asyncio.ensure_future(self._subscribe(tenant))
        await asyncio.shield(ready)
        return self.windows[tenant]

    async def _subscribe(self, tenant: str) -> None:
        subject = tenant_filter(tenant, live=True)
        window = self.windows.setdefault(
            tenant, Window(max_count=self.window_count, max_age=self.window_age)
        )
        if tenant not in self.subs:  # a retry after a failed arm keeps its subscription
            self.subs[tenant] = await self._listen(subject)
        await self.nc.flush(int(max(1, self.timeout)))  # the link answers (see below)
        # Nothing stored after the arm's position is missed: the SUB and the arm's stream_info
        # request leave in that order through nats-py's pending buffer, and the server
        # registers the SUB before it reads the position. The flush alone would not say so:
        # nats-py writes its PING ahead of what the pending buffer still holds.
        await self._arm(window)
        if self._ready.get(tenant) is asyncio.current_task():  # not dropped or re-asked since
            self._ready[tenant] = self._settled()

    def _settled(self) -> asyncio.Future[None]:
        """The finished future every ready tenant shares."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._done.set_result(None)
        return self._done

    async def _listen(self, subject: str) -> Subscription:
        """Subscribe ``subject`` to the live handler: routed past nats-py's queue when
        :mod:`~tidings.gateway.direct` is installed, else through a callback."""
        if self.direct is None:
            return await self.nc.subscribe(
                subject, cb=self._on_message, pending_msgs_limit=65536, pending_bytes_limit=-1
            )
        sub = await self.nc.subscribe(subject, pending_bytes_limit=-1)
        # Anything that came in before the route (while subscribe awaited): handled first.
        for msg in self.direct.take_over(sub, self._on_raw):
            await self._on_message(msg)
        return sub

    async def _arm(self, window: Window) -> None:
        # One short try: the heal that calls this is retried (TRY_TIMEOUT).
        info = await self._short().stream_info(self.stream)
        last = info.state.last_seq
        self.head = max(self.head, last)
        window.arm(last)

    async def _unsubscribe(self, tenant: str) -> None:
        self._lingering.pop(tenant, None)
        if self.hub.tenants.get(tenant):
            return  # somebody came back meanwhile
        ready = self._ready.pop(tenant, None)
        sub = self.subs.pop(tenant, None)
        self.windows.pop(tenant, None)
        if ready is not None and not ready.done():
            ready.cancel()
        if sub is not None:
            if self.direct is not None:
                self.direct.unroute(sub._id)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- the live handler ------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        """A live message through nats-py's own path (headers parsed to a dict)."""
        headers = msg.headers or {}
        try:
            seq: int | None = int(headers["Nats-Sequence"])
        except Exception:
            seq = None
        self._deliver(msg.subject, msg.data, seq, headers.get("Nats-Time-Stamp"))

    def _on_raw(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        """A live message straight from the parser (:mod:`~tidings.gateway.direct`): only the
        two headers the gateway reads are looked up in the raw block."""
        raw = direct.header_value(headers, _SEQUENCE)
        try:
            seq: int | None = int(raw) if raw is not None else None
        except ValueError:
            seq = None
        stamp = direct.header_value(headers, _STAMP)
        self._deliver(
            subject.decode(errors="replace"),
            data,
            seq,
            stamp.decode(errors="replace") if stamp else None,
        )

    def _deliver(self, subject: str, data: bytes, seq: int | None, stamp: str | None) -> None:
        try:
            if seq is None:
                raise LookupError("no Nats-Sequence header")
            tenant, room, n, body = wire_line(subject, data, seq)
        except Exception as exc:  # a bad message must never stop the others
            self._drop(exc, subject, seq, "live")
            return
        if seq > self.head:
            self.head = seq
        mute = mute_key(n.event, n.severity is Severity.CRITICAL)
        window = self.windows.get(tenant)
        if window is not None:
            window.add(seq, room, body, None, mute)
        if n.traceparent and tracing_enabled():
            self._traced_publish(n, seq, tenant, room, body, mute)
        else:
            self.hub.publish(seq, tenant, room, body, mute)
        if stamp:
            self.on_delivered(lag(stamp))

    @property
    def dropped(self) -> int:
        return self.drops.total

    def _drop(self, exc: Exception, subject: str, seq: int | None, path: str) -> None:
        if isinstance(exc, Rejected):
            reason, why = exc.reason, str(exc)
        elif seq is None:
            reason, why = "sequence", "no Nats-Sequence header"
        else:
            reason, why = "other", type(exc).__name__  # its text might quote the content
        self.drops.drop(reason, subject=subject, seq=seq, why=why, path=path)

    def _traced_publish(
        self, n: WireNotification, seq: int, tenant: str, room: str, body: bytes, mute: str | None
    ) -> None:
        """One delivery span per notification (not per connection), child of the publish."""
        members = self.hub.rooms.get((tenant, room), {})
        with _tracer.start_as_current_span(
            "tidings.deliver",
            context=context_from(n.traceparent, n.tracestate),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "tidings.notification.id": n.id,
                "tidings.seq": seq,
                "tidings.tenant": tenant,
                "tidings.room": room,
                "tidings.receivers": len(members),
            },
        ):
            self.hub.publish(seq, tenant, room, body, mute)

    # -- resume support --------------------------------------------------------------------

    async def cover(self, tenant: str, since: int) -> bool:
        """Make ``tenant``'s window complete from ``since + 1``; False when that is impossible.

        The first resume a window cannot answer reads the window's whole reach back (the
        newest ``replay_max`` notifications of the tenant, then trimmed to the age bound), and
        every concurrent caller waits for that one read: a reconnect storm or a heal costs one
        JetStream read per tenant per gateway, whatever the clients' resume points. A point the
        reach does not cover is beyond the bound: False, without reading again.
        """
        window = await self.ensure(tenant)
        while not window.covers(since):
            if self.windows.get(tenant) is not window or not window.armed:
                return False
            if window.reached:
                return False  # read back as far as the bound allows: beyond it
            running = self._backfills.get(tenant)
            if running is None or running.done():
                # A finished read whose clean-up callback has not run yet is never awaited:
                # that returns without yielding, and this loop would spin (a 10,000-client
                # storm froze a gateway so).
                running = self._start_backfill(tenant, window)
            await asyncio.shield(running)  # transient errors were retried inside: others rise
        return True

    def _start_backfill(self, tenant: str, window: Window) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._backfill(tenant, window))
        self._backfills[tenant] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._backfills.get(tenant) is task:
                del self._backfills[tenant]

        task.add_done_callback(done)
        return task

    async def _backfill(self, tenant: str, window: Window) -> None:
        upto, generation = window.complete_from - 1, window.generation
        self._reads += 1
        read = self._reads
        timeout = min(self.timeout, TRY_TIMEOUT)

        def reader(attempt: int) -> DirectReader:
            return DirectReader(
                self.nc,
                stream=self.stream,
                reply=f"{self._reply_base()}.{read}",
                timeout=timeout,
                direct_timeout=min(timeout, DIRECT_TIMEOUT),
                doubt=self._doubt,
            )

        async with self._replays:
            reach = await read_reach_retrying(
                reader,
                subject=tenant_filter(tenant),
                upto=upto,
                max_count=min(self.replay_max, self.window_count),
                retry_for=self.retry_for,
            )
        now_wall, now_mono = time.time(), time.monotonic()
        entries: list[Entry] = []
        for m in reach.messages:
            try:
                _, room, n, body = wire_line(f"{LIVE_PREFIX}.{m.subject}", m.data, m.seq)
            except Exception as exc:
                self._drop(exc, m.subject, m.seq, "replay")
                continue
            stored = stored_at(m.stamp)
            age = 0.0 if stored is None else max(0.0, now_wall - stored)
            mute = mute_key(n.event, n.severity is Severity.CRITICAL)
            entries.append(entry(m.seq, room, body, now_mono - age, mute))
        window.merge(entries, start=reach.start, generation=generation, reached=True)

    async def last_seq(self) -> int:
        """The stream's last seq, read now (one short JetStream call; ``head`` follows it)."""
        info = await self._short().stream_info(self.stream)
        self.head = max(self.head, info.state.last_seq)
        return int(info.state.last_seq)

    def _reply_base(self) -> str:
        """Where direct-get answers come: under the connection's reply prefix, the only one its
        NATS user may read (``_INBOX_gateway`` in the chart); chosen at the first read."""
        if not self._inbox:
            self._inbox = self.nc.new_inbox()
        return self._inbox

    def _short(self) -> JetStreamContext:
        """A JetStream context whose API calls give up after TRY_TIMEOUT (to be retried)."""
        return self.nc.jetstream(timeout=min(self.timeout, TRY_TIMEOUT))

    # -- NATS connection loss ------------------------------------------------------------------

    def disarm_all(self) -> None:
        for window in self.windows.values():
            window.disarm()

    async def rearm_all(self) -> None:
        """After a reconnect on the same client (its subscriptions flushed to the server): one
        read of the stream's position arms every window that has a subscription (one JetStream
        call per heal, however many tenants). A window whose subscribe failed stays unarmed:
        its tenant's next :meth:`ensure` subscribes and arms it."""
        info = await self._short().stream_info(self.stream)
        last = info.state.last_seq
        self.head = max(self.head, last)
        for tenant, window in list(self.windows.items()):
            if tenant in self.subs:
                window.arm(last)

    async def rebind(self, nc: NATS, js: JetStreamContext) -> None:
        """A new client (nats-py gave up on the old one, and its subscriptions with it):
        subscribe anew for every tenant held, and re-arm."""
        self.nc, self.js = nc, js
        self.direct = direct.install(nc)
        tenants = list(self._ready)
        self._ready.clear()
        self.subs.clear()
        for tenant in tenants:
            await self.ensure(tenant)


_SEQUENCE = b"\r\nNats-Sequence:"  # the headers RePublish adds that the gateway reads
_STAMP = b"\r\nNats-Time-Stamp:"
