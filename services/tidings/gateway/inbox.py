"""The gateway's side of the inbox: counts at ``hello``, ``inbox`` frames, muted domains.

On (``TIDINGS_GATEWAY_INBOX``), a ``hello`` asks the inbox API for the user's counts and muted
domains (``tidings.inbox.session``), bounded by ``TIDINGS_GATEWAY_INBOX_TIMEOUT``: the counts go
in the welcome, the muted set on the connection (the fan-out and the replay leave those domains
out). No answer in time costs the welcome its counts, never its delay. The gateway listens to
``tidings.inbox.changed.<tenant>.>`` while it hosts a connection of that tenant and pushes each
change to every connection of the (tenant, user) its subject names, before or after the
welcome but never ahead of it; and to ``tidings.inbox.changed.<tenant>``, a change for every
user of the tenant (its preference defaults), after which it asks again for each of them.

Registration comes first: the tenant's subscription is in place and the connection is known
before the question is asked, so a change committed after the inbox answered is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import Counter

from tidings import protocol as p
from tidings.auth import Claims
from tidings.gateway import inbox_wire as wire
from tidings.gateway.connection import Connection, State

log = logging.getLogger(__name__)

User = tuple[str, str]  # (tenant, user)
MAX_HELD = 64  # inbox frames held for one connection until its welcome is out
REFRESH_CONCURRENCY = 16  # session questions at once after a NATS reconnect
REFRESH_FOR = 15.0  # how long a refresh keeps asking an inbox that does not answer yet


class Throttled:
    """A warning logged at most once per ``every`` seconds, with how many were folded in."""

    def __init__(self, logger: logging.Logger, message: str, *, every: float = 10.0) -> None:
        self.logger, self.message, self.every = logger, message, every
        self._last = -every
        self._folded = 0

    def __call__(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._folded += 1
            return
        self.logger.warning(self.message, extra={**extra, "suppressed": self._folded})
        self._last, self._folded = now, 0


class Inbox:
    """Which connections each (tenant, user) has here, the tenants' change subscriptions, and
    the session question."""

    def __init__(
        self,
        nc: NATS,
        *,
        timeout: float,
        linger: float,
        session_failures: Counter,  # by reason: timeout, no_responders, refused, invalid, error
        changes_dropped: Counter,
        frames: Counter,
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.linger = linger
        self.users: dict[User, dict[Connection, Claims]] = {}  # the claims it joined with
        self.tenants: dict[str, int] = {}
        self.subs: dict[str, Subscription] = {}
        self.tenant_subs: dict[str, Subscription] = {}  # tidings.inbox.changed.<tenant>
        self._tenant_refresh: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # tenants changed again while being refreshed
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._held: dict[Connection, list[bytes]] = {}  # registered, welcome not out yet
        self._prefs: dict[User, int] = {}  # changes with `muted` seen, per user here
        self._failures = session_failures
        self._dropped = changes_dropped
        self._frames = frames
        self._warn_session = Throttled(log, "inbox session not answered; welcome without counts")
        self._warn_change = Throttled(log, "inbox change dropped")
        self._warn_refresh = Throttled(log, "inbox counts not refreshed after a NATS reconnect")

    # -- hello ---------------------------------------------------------------------------------

    async def join(self, conn: Connection, claims: Claims) -> dict[str, Any] | None:
        """Register ``conn`` (its tenant's changes followed, its frames held until
        :meth:`welcomed`), then ask the inbox; the counts for the welcome, or None without an
        answer in time (then nothing is muted until a change says otherwise)."""
        user = (claims.tenant, claims.user)
        self._register(conn, user, claims)
        prefs = self._prefs.get(user, 0)
        try:
            async with asyncio.timeout(self.timeout):
                await self.ensure(claims.tenant)
                answer = await self._ask(claims)
        except TimeoutError:
            self._failed("timeout", claims)
            return None
        except NoRespondersError:
            self._failed("no_responders", claims)
            return None
        except wire.Refused as exc:
            self._failed("refused", claims, str(exc))
            return None
        except ValueError as exc:
            self._failed("invalid", claims, str(exc))
            return None
        except Exception as exc:  # NATS trouble: the welcome goes without counts
            self._failed("error", claims, repr(exc))
            return None
        if self._prefs.get(user, 0) == prefs:  # no newer preferences came meanwhile
            conn.muted = answer.muted or None
        return answer.counts

    async def _ask(self, claims: Claims) -> wire.Session:
        request = wire.session_request(
            claims.tenant, claims.user, claims.roles, claims.room_patterns
        )
        try:
            reply = await self.nc.request(wire.SESSION_SUBJECT, request, timeout=self.timeout)
        except NatsTimeoutError:
            raise TimeoutError from None
        return wire.read_session(reply.data)

    def _failed(
        self, reason: str, claims: Claims, detail: str = "", warn: Throttled | None = None
    ) -> None:
        self._failures.labels(reason).inc()
        (warn or self._warn_session)(reason=reason, tenant=claims.tenant, error=detail)

    def welcomed(self, conn: Connection) -> None:
        """The welcome is out: what was held for ``conn`` follows it, the rest goes directly."""
        held = self._held.pop(conn, None)
        if held and conn.state is State.LIVE:
            for line in held:
                conn.write_control(line)

    def forget(self, conn: Connection) -> None:
        """The connection is gone (idempotent)."""
        self._held.pop(conn, None)
        user = (conn.tenant, conn.user)
        conns = self.users.get(user)
        if conns is None or conn not in conns:
            return
        del conns[conn]
        if not conns:
            del self.users[user]
            self._prefs.pop(user, None)
        left = self.tenants[conn.tenant] - 1
        if left:
            self.tenants[conn.tenant] = left
            return
        del self.tenants[conn.tenant]
        tenant = conn.tenant
        self._lingering[tenant] = asyncio.get_running_loop().call_later(
            self.linger, lambda: asyncio.ensure_future(self._unsubscribe(tenant))
        )

    def _register(self, conn: Connection, user: User, claims: Claims) -> None:
        self._held[conn] = []
        self.users.setdefault(user, {})[conn] = claims
        tenant = user[0]
        self.tenants[tenant] = self.tenants.get(tenant, 0) + 1
        handle = self._lingering.pop(tenant, None)
        if handle is not None:
            handle.cancel()

    # -- the tenants' subscriptions -------------------------------------------------------------

    async def ensure(self, tenant: str) -> None:
        """Until ``tenant``'s changes are subscribed: the SUBs leave before anything this
        client sends later (the hello's counts request: nats-py keeps its pending buffer in
        order; its flush's PING can overtake them, so the flush only says the link answers). A
        failed try is not kept: the next caller subscribes again."""
        ready = self._ready.get(tenant)
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            ready = self._ready[tenant] = asyncio.ensure_future(self._subscribe(tenant))
            ready.add_done_callback(_retrieve)
        await asyncio.shield(ready)

    async def _subscribe(self, tenant: str) -> None:
        if tenant not in self.subs:
            self.subs[tenant] = await self.nc.subscribe(
                wire.changed_filter(tenant), cb=self._on_change
            )
        if tenant not in self.tenant_subs:
            self.tenant_subs[tenant] = await self.nc.subscribe(
                wire.tenant_subject(tenant), cb=self._on_tenant_change
            )
        await self.nc.flush(max(1, int(self.timeout)))

    async def _unsubscribe(self, tenant: str) -> None:
        self._lingering.pop(tenant, None)
        if self.tenants.get(tenant):
            return  # somebody came back meanwhile
        ready = self._ready.pop(tenant, None)
        subs = (self.subs.pop(tenant, None), self.tenant_subs.pop(tenant, None))
        if ready is not None and not ready.done():
            ready.cancel()
        for sub in subs:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def rebind(self, nc: NATS) -> None:
        """A new NATS client (the old one gave up, its subscriptions with it): subscribe anew
        for every tenant hosted. A step of the NATS link's ``on_up``: a failure is retried."""
        self.nc = nc
        self.subs.clear()
        self.tenant_subs.clear()
        self._ready.clear()
        for tenant in list(self.tenants):
            await self.ensure(tenant)

    async def refresh(self, *, retry_for: float = REFRESH_FOR, tenant: str | None = None) -> None:
        """After a NATS loss, changes may have been missed: ask again for every user here and
        push their counts (and muted set) as an ``inbox`` frame. Best effort, bounded: the API
        may come back after the gateway, so a question nobody answered is asked again (backing
        off) for ``retry_for`` seconds. With ``tenant``, only that tenant's users."""
        gate = asyncio.Semaphore(REFRESH_CONCURRENCY)
        deadline = time.monotonic() + retry_for

        async def one(user: User, claims: Claims) -> None:
            prefs = self._prefs.get(user, 0)
            pause = 0.25
            while True:
                try:
                    async with gate:
                        answer = await self._ask(claims)
                    break
                except (TimeoutError, NoRespondersError) as exc:
                    if time.monotonic() + pause > deadline or user not in self.users:
                        self._failed("refresh", claims, repr(exc), self._warn_refresh)
                        return
                except Exception as exc:
                    self._failed("refresh", claims, repr(exc), self._warn_refresh)
                    return
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
            muted = None if self._prefs.get(user, 0) != prefs else answer.muted
            frame = p.InboxFrame(
                counts=answer.counts,
                ids=(),
                set={},
                muted=None if muted is None else tuple(sorted(muted)),
            )
            self._push(user, wire.Change(p.encode(frame), muted))

        await asyncio.gather(
            *(
                one(user, next(iter(conns.values())))
                for user, conns in list(self.users.items())
                if tenant is None or user[0] == tenant
            )
        )

    # -- changes -------------------------------------------------------------------------------

    async def _on_change(self, msg: Msg) -> None:
        try:
            user = wire.changed_target(msg.subject)
            change = wire.read_change(msg.data)
        except ValueError as exc:  # never forwarded, never fatal
            self._dropped.inc()
            self._warn_change(subject=msg.subject, error=str(exc))
            return
        self._push(user, change)

    async def _on_tenant_change(self, msg: Msg) -> None:
        """Every user of the tenant here is asked for again (their muted set and counts depend
        on their own overrides too); a change arriving during that refresh runs it once more."""
        try:
            tenant = wire.tenant_target(msg.subject)
            wire.read_tenant_change(msg.data)
        except ValueError as exc:
            self._dropped.inc()
            self._warn_change(subject=msg.subject, error=str(exc))
            return
        running = self._tenant_refresh.get(tenant)
        if running is not None and not running.done():
            self._again.add(tenant)
            return
        task = asyncio.ensure_future(self._refresh_tenant(tenant))
        self._tenant_refresh[tenant] = task
        task.add_done_callback(_retrieve)

    async def _refresh_tenant(self, tenant: str) -> None:
        try:
            while True:
                self._again.discard(tenant)
                await self.refresh(tenant=tenant)
                if tenant not in self._again:
                    return
        finally:
            self._tenant_refresh.pop(tenant, None)

    async def close(self) -> None:
        """Stop the tenant refreshes under way (the gateway stops)."""
        tasks = list(self._tenant_refresh.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _push(self, user: User, change: wire.Change) -> None:
        conns = self.users.get(user)
        if not conns:
            return
        if change.muted is not None:
            self._prefs[user] = self._prefs.get(user, 0) + 1
            muted = change.muted or None
            for conn in conns:
                conn.muted = muted
        for conn in list(conns):
            held = self._held.get(conn)
            if held is None:
                conn.write_control(change.line)
            elif len(held) < MAX_HELD:
                held.append(change.line)
            else:  # each frame carries the whole counts: the newest ones matter most
                held.pop(0)
                held.append(change.line)
            self._frames.inc()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Read a subscribe's outcome so a failure nobody awaited is not reported as lost."""
    if not future.cancelled():
        future.exception()
