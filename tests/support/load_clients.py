"""Many SDK clients at once, a steady publisher, and what the stream says each should have got.

The fault tests (gateway killed, drained, NATS restarted) all end with the same question: did
every client receive exactly the notifications the stream holds for its rooms, in order, none
twice? :func:`read_stream` answers "what was stored" from JetStream itself (not from anything
the gateway computed), :class:`Follower` records what one real ``tidings.client.Subscriber``
yielded, and :meth:`Fleet.problems` compares the two for every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from tidings.client import Backoff, Subscriber, SubscriberOptions
from tidings.client.subscriber_events import Event, Reset, State, StateChanged
from tidings.envelope import decode_wire
from tidings.errors import Unavailable
from tidings.publishing import TRANSIENT_ERRORS, PublishResult
from tidings.subjects import parse_subject

Mint = Callable[..., str]


# --- what the stream holds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored notification: its sequence and the room it was addressed to."""

    seq: int
    tenant: str | None  # None for a broadcast
    room: str  # as clients name it: tenant, user:u, role:r, room:n, broadcast
    at: float = 0.0  # when the stream stored it (POSIX seconds)
    id: str = ""  # the notification's id (the publisher's idempotency key)


async def read_stream(
    js: JetStreamContext, *, stream: str = "TIDINGS", start: int = 1, timeout: float = 10.0
) -> list[Stored]:
    """Every notification stored from ``start`` on, in stream order, read with one consumer."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start),
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30.0,
    )
    # Right after a fault the cluster may still answer "JetStream temporarily unavailable"
    # (10008): ask again within the timeout; the check is of what is stored, not of that moment.
    async with asyncio.timeout(timeout):
        while True:
            try:
                sub = await js.pull_subscribe("", stream=stream, config=config)
                break
            except (ServiceUnavailableError, TimeoutError):
                await asyncio.sleep(0.25)
    out: list[Stored] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        async with asyncio.timeout(timeout):
            while pending > 0:
                for msg in await sub.fetch(min(pending, 500), timeout=timeout):
                    route = parse_subject(msg.subject)
                    meta = msg.metadata
                    out.append(
                        Stored(
                            meta.sequence.stream,
                            route.tenant,
                            route.audience.room,
                            meta.timestamp.timestamp(),
                            decode_wire(msg.data).id,
                        )
                    )
                    pending = meta.num_pending
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def expected_seqs(
    stored: Iterable[Stored], *, tenant: str, rooms: Iterable[str], after: int
) -> list[int]:
    """The seqs a connection of ``tenant`` in ``rooms`` must receive after ``after``."""
    wanted = set(rooms) | {"broadcast"}
    return [
        s.seq
        for s in stored
        if s.seq > after and s.room in wanted and (s.tenant is None or s.tenant == tenant)
    ]


# --- one SDK client ----------------------------------------------------------------------------


@dataclass(slots=True)
class Follower:
    """One ``Subscriber`` and everything it yielded and reported."""

    name: str
    tenant: str
    user: str
    roles: tuple[str, ...]
    named: tuple[str, ...]  # room:<name> joined in hello
    urls: Sequence[str]
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # publish (data.sent) to yield, s
    # (0.0 for a notification without data.sent)
    received_at: list[float] = field(default_factory=list)  # wall time of each yield
    events: list[Event] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)  # monotonic, one per event
    welcomed: list[str] = field(default_factory=list)  # URL of every welcome, in order
    sub: Subscriber | None = None
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def rooms(self) -> set[str]:
        return {"tenant", f"user:{self.user}", *(f"role:{r}" for r in self.roles), *self.named}

    @property
    def resets(self) -> list[Reset]:
        return [e for e in self.events if isinstance(e, Reset)]

    def moved_on_request(self) -> bool:
        """True when a connection ended because the gateway sent ``reconnect`` (drain)."""
        return any(
            isinstance(e, StateChanged)
            and e.state is State.DISCONNECTED
            and (e.reason or "").startswith("gateway asked to reconnect")
            for e in self.events
        )

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        self.event_times.append(time.monotonic())
        if isinstance(event, StateChanged) and event.state is State.CONNECTED:
            self.welcomed.append(event.url)

    async def start(
        self,
        token: str,
        *,
        backoff: Backoff,
        resume: tuple[int, str] | None = None,
        wait: bool = True,
    ) -> None:
        """Connect (with ``resume``: from that ``(seq, epoch)``); ``wait`` for the welcome."""
        since, epoch = resume if resume is not None else (None, None)
        options = SubscriberOptions(
            rooms=self.named,
            backoff=backoff,
            on_event=self._on_event,
            open_timeout=5.0,
            since=since,
            epoch=epoch,
        )
        sub = Subscriber(list(self.urls), options, token=token)
        self.sub = sub
        await sub.start(wait=wait)
        self.task = asyncio.ensure_future(self._collect(sub))

    async def _collect(self, sub: Subscriber) -> None:
        try:
            async for n in sub:
                self.seqs.append(n.seq)
                self.received_at.append(time.time())
                sent = n.data.get("sent")
                self.latencies.append(time.time() - sent if isinstance(sent, float) else 0.0)
                self._progress.set()
        except Exception as exc:  # kept for the report: the iterator must not end by itself
            self.error = exc

    async def wait_for(self, seq: int, *, timeout: float) -> bool:
        """Until this client yielded ``seq`` or later (or it stopped); False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not (self.seqs and self.seqs[-1] >= seq) and self.error is None:
                    self._progress.clear()
                    await self._progress.wait()
        return bool(self.seqs and self.seqs[-1] >= seq)

    def outages(self) -> list[float]:
        """Seconds from each lost connection to live again (synced on the next gateway)."""
        out: list[float] = []
        down: float | None = None
        for event, at in zip(self.events, self.event_times, strict=True):
            if not isinstance(event, StateChanged):
                continue
            if event.state is State.DISCONNECTED and down is None:
                down = at
            elif event.state is State.LIVE and down is not None:
                out.append(at - down)
                down = None
        return out

    def longest_latency(self, *, since: float) -> float:
        """The longest publish-to-yield time (``data.sent``) of what it yielded after the wall
        time ``since``: what its user waited, the publisher's retries included."""
        return max(
            (lat for lat, at in zip(self.latencies, self.received_at, strict=True) if at > since),
            default=0.0,
        )

    def wait_after_stored(self, stored: Sequence[Stored], *, after: int) -> float:
        """The longest time from the stream storing a notification (seq > ``after``) to this
        client yielding it: how long it waited for a gateway that was healing."""
        at = {s.seq: s.at for s in stored}
        waits = [
            received - at[seq]
            for seq, received in zip(self.seqs, self.received_at, strict=True)
            if seq > after and seq in at
        ]
        return max(waits, default=0.0)

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)

    def problems(self, stored: Sequence[Stored], *, after: int) -> list[str]:
        """What differs from the stream (empty when the client's view is exact)."""
        want = expected_seqs(stored, tenant=self.tenant, rooms=self.rooms, after=after)
        got = [s for s in self.seqs if s > after]
        found: list[str] = []
        if self.error is not None:
            found.append(f"iterator ended with {self.error!r}")
        if self.resets:
            found.append(f"reset {self.resets}")
        dupes = self.sub.stats.duplicates if self.sub is not None else 0
        if dupes:
            found.append(f"{dupes} duplicate(s) sent by the gateway")
        if any(b <= a for a, b in itertools.pairwise(self.seqs)):
            found.append("seqs not strictly increasing")
        if got != want:
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            found.append(
                f"got {len(got)} want {len(want)}; missing {missing[:10]} "
                f"({len(missing)}), unexpected {extra[:10]} ({len(extra)})"
            )
        return [f"{self.name}: {p}" for p in found]


# --- many of them ------------------------------------------------------------------------------


@dataclass(slots=True)
class Fleet:
    """Clients of a few tenants, spread over users, roles and named rooms (see :func:`fleet`)."""

    followers: list[Follower]

    async def start(
        self, mint: Mint, *, backoff: Backoff, concurrency: int = 25, timeout: float = 30.0
    ) -> None:
        """Connect everybody (at most ``concurrency`` handshakes at once); fail if one cannot."""
        gate = asyncio.Semaphore(concurrency)

        async def one(f: Follower) -> None:
            async with gate:
                token = mint(tenant=f.tenant, user=f.user, roles=list(f.roles), rooms=["site-*"])
                await f.start(token, backoff=backoff)

        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one(f) for f in self.followers))

    async def wait_caught_up(
        self, stored: Sequence[Stored], *, after: int, timeout: float
    ) -> list[str]:
        """Wait until every client yielded its last expected seq; names those that did not."""
        deadline = time.monotonic() + timeout

        async def one(f: Follower) -> str | None:
            want = expected_seqs(stored, tenant=f.tenant, rooms=f.rooms, after=after)
            if not want:
                return None
            left = max(0.1, deadline - time.monotonic())
            ok = await f.wait_for(want[-1], timeout=left)
            return None if ok else f"{f.name} stuck at {f.seqs[-1:] or 'nothing'} < {want[-1]}"

        late = await asyncio.gather(*(one(f) for f in self.followers))
        return [x for x in late if x is not None]

    def problems(self, stored: Sequence[Stored], *, after: int) -> list[str]:
        return [p for f in self.followers for p in f.problems(stored, after=after)]

    async def close(self) -> None:
        await asyncio.gather(*(f.close() for f in self.followers), return_exceptions=True)


TENANTS = ("acme", "globex")
USERS = 8
ROLES = ("ops", "audit")
SITES = ("site-a", "site-b")


def fleet(
    count: int, url_orders: Sequence[Sequence[str]], *, tenants: Sequence[str] = TENANTS
) -> Fleet:
    """``count`` clients: tenants alternate, users u0..u7, a role each, every third in a named
    room; client i is given ``url_orders[i % len(url_orders)]`` (its first URL is tried first)."""
    followers = [
        Follower(
            name=f"c{i}",
            tenant=tenants[i % len(tenants)],
            user=f"u{i % USERS}",
            roles=(ROLES[i % len(ROLES)],),
            named=(f"room:{SITES[0]}",) if i % 3 == 0 else (),
            urls=url_orders[i % len(url_orders)],
        )
        for i in range(count)
    ]
    return Fleet(followers)


# --- a steady publisher ------------------------------------------------------------------------


def mixed_body(i: int, *, run: str = "r", tenants: Sequence[str] = TENANTS) -> dict[str, Any]:
    """Notification ``i`` of a repeating mix over every audience kind, with a fixed id (a retry
    after a NATS outage is then collapsed by the stream's duplicate window)."""
    tenant = tenants[i % len(tenants)]
    kind = (i // len(tenants)) % 8
    audience: dict[str, Any] = {}
    if kind in (1, 2):
        audience = {"user": f"u{i % USERS}"}
    elif kind == 3:
        audience = {"role": ROLES[i % len(ROLES)]}
    elif kind == 4:
        audience = {"room": SITES[0]}
    elif kind == 5:
        audience = {"room": SITES[1]}  # nobody joined it: must reach no one
    elif kind == 6:
        audience = {"user": "nobody"}
    elif kind == 7 and i % 3 == 0:
        audience = {"broadcast": True}
    body: dict[str, Any] = {
        "event": "incident.created",
        "title": f"{run}-{i}",
        "message": "m",
        "id": f"{run}-{i:06d}",
        "data": {"sent": time.time()},
    }
    if audience.get("broadcast"):
        body["audience"] = audience
    else:
        body["tenant"] = tenant
        if audience:
            body["audience"] = audience
    return body


class Publishes(Protocol):
    """The SDK's :class:`Publisher`, or anything publishing the same way (the sidecar over HTTP)."""

    async def publish(self, body: dict[str, Any]) -> PublishResult: ...


class SteadyPublisher:
    """Publishes :func:`mixed_body` notifications at ``rate`` per second until stopped.

    A publish that NATS does not take (it is down) is retried with the same id until it is, so
    the stream ends up with each notification exactly once and nothing is skipped.
    """

    def __init__(
        self, pub: Publishes, *, rate: float, run: str = "r", tenants: Sequence[str] = TENANTS
    ) -> None:
        self.pub = pub
        self.rate = rate
        self.run = run
        self.tenants = tenants
        self.results: list[PublishResult] = []
        self.retries = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> SteadyPublisher:
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def _loop(self) -> None:
        start = time.monotonic()
        for i in itertools.count():
            if self._stop.is_set():
                return
            await self._publish(mixed_body(i, run=self.run, tenants=self.tenants))
            pause = start + (i + 1) / self.rate - time.monotonic()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)

    async def _publish(self, body: dict[str, Any]) -> None:
        while True:
            try:
                self.results.append(await self.pub.publish(body))
                return
            except (*TRANSIENT_ERRORS, Unavailable):  # as the sidecar's outbox retries
                self.retries += 1
                await asyncio.sleep(0.1)

    async def until(self, count: int, *, timeout: float) -> None:
        """Wait until ``count`` notifications were published."""
        async with asyncio.timeout(timeout):
            while len(self.results) < count:
                await asyncio.sleep(0.02)

    async def stop(self, *, timeout: float = 20.0) -> list[PublishResult]:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout)
        return self.results
