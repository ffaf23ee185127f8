"""The Python WebSocket client against real gateways and a real nats-server.

What an application relies on: notifications in order and exactly once across gateway restarts
and drains, ``recovered``/``reset`` telling whether its view is complete, refusals as typed
errors without a retry loop, and a token refreshed before it expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from nats.js import JetStreamContext

from tests.support.tokens import JWT_SECRET
from tests.support.wsclient import ws_url
from tidings import protocol as p
from tidings.client import Backoff, Publisher, Subscriber, SubscriberOptions, connect
from tidings.client.errors import GaveUp, Refused, RequestRefused
from tidings.client.subscriber_events import Event, Recovered, Reset, State, StateChanged
from tidings.codes import ErrorCode
from tidings.dev.embedded import EmbeddedNats, wait_for_port
from tidings.errors import InvalidField
from tidings.gateway.service import Gateway
from tidings.ports import free_port
from tidings.settings import Settings

FAST = Backoff(base=0.05, max=0.4, healthy_after=5.0)
# A coalescing window wide enough that a burst of notifications shares frames.
pytestmark = pytest.mark.settings(gateway={"batch_window": 0.02})


def fast(**options: object) -> SubscriberOptions:
    """Quick reconnects, plus whatever the test sets."""
    return dataclasses.replace(SubscriberOptions(backoff=FAST), **options)


def on_port(settings: Settings, port: int) -> Settings:
    return dataclasses.replace(settings, gateway=settings.gateway.model_copy(update={"port": port}))


async def take(sub: Subscriber, count: int, *, timeout: float = 10.0) -> list[p.NotificationFrame]:
    async with asyncio.timeout(timeout):
        return [await anext(sub) for _ in range(count)]


def states(events: list[Event]) -> list[State]:
    return [e.state for e in events if isinstance(e, StateChanged)]


@pytest.fixture
async def started(gateway_settings: Settings, js: JetStreamContext) -> AsyncIterator[list[Gateway]]:
    """Gateways a test starts itself (to stop, drain or replace them); all stopped at the end."""
    gateways: list[Gateway] = []
    try:
        yield gateways
    finally:
        for gw in gateways:
            if not gw._stopped.is_set():
                await gw.stop()


async def start_gateway(settings: Settings, into: list[Gateway]) -> Gateway:
    gw = Gateway(settings)
    await gw.start()
    into.append(gw)
    return gw


# --- live ------------------------------------------------------------------------------------


async def test_live_notifications_in_order_and_batched_frames_split(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    pub = Publisher(js)
    async with await connect(ws_url(gateway), token=token(), options=fast()) as sub:
        assert sub.welcome is not None and sub.welcome.tenant == "acme"
        assert sub.epoch == gateway.epoch
        frames_before = sub.stats.frames
        results = await pub.publish_batch(
            [
                {"tenant": "acme", "event": "incident.created", "title": f"t{i}", "message": "m"}
                for i in range(30)
            ]
        )
        got = await take(sub, 30)
        assert [n.title for n in got] == [f"t{i}" for i in range(30)]
        assert [n.seq for n in got] == [r.seq for r in results]
        assert all(isinstance(n, p.NotificationFrame) and n.room == "tenant" for n in got)
        # several notifications arrived per frame, and each was yielded on its own
        assert sub.stats.frames - frames_before < 30
        assert sub.position == (results[-1].seq, gateway.epoch)


async def test_subscribe_and_unsubscribe_are_acknowledged(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    pub = Publisher(js)
    async with await connect(ws_url(gateway), token=token(rooms=["site-*"]), options=fast()) as sub:
        await sub.subscribe("room:site-berlin")
        assert list(sub.rooms) == ["room:site-berlin"]
        with pytest.raises(RequestRefused) as refused:
            await sub.subscribe("room:hq")
        assert refused.value.frame.code == "forbidden"
        await pub.to_room("acme", "site-berlin", "work_permit.created", title="in", message="m")
        (n,) = await take(sub, 1)
        assert (n.title, n.room) == ("in", "room:site-berlin")
        await sub.unsubscribe("room:site-berlin")
        assert not sub.rooms
        await pub.to_room("acme", "site-berlin", "work_permit.created", title="out", message="m")
        await pub.to_tenant("acme", "incident.created", title="after", message="m")
        (n,) = await take(sub, 1)
        assert n.title == "after"  # the room notification after unsubscribe never came
        assert await sub.ping() < 5


async def test_a_reader_that_falls_behind_holds_a_bounded_queue_and_loses_nothing(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    pub = Publisher(js)
    async with await connect(ws_url(gateway), token=token(), options=fast(max_pending=5)) as sub:
        results = await pub.publish_batch(
            [
                {"tenant": "acme", "event": "incident.created", "title": f"t{i}", "message": "m"}
                for i in range(40)
            ]
        )
        async with asyncio.timeout(5):
            while sub.stats.notifications < 6:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert sub.stats.notifications == 6  # 5 queued, 1 waiting: the reader stopped reading
        got = await take(sub, 40)
        assert [n.seq for n in got] == [r.seq for r in results]
        for i in range(10):
            await pub.to_tenant("acme", "incident.created", title=f"late{i}", message="m")
        async with asyncio.timeout(5):
            while sub.stats.notifications < 46:
                await asyncio.sleep(0.02)
        started = time.monotonic()
        await sub.close()  # with the reader stuck on a full queue
        assert time.monotonic() - started < 1.0
        assert sub.state is State.CLOSED


# --- resume ------------------------------------------------------------------------------------


async def test_gateway_restart_resumes_every_notification_exactly_once(
    gateway_settings: Settings,
    js: JetStreamContext,
    token: Callable[..., str],
    started: list[Gateway],
) -> None:
    first = await start_gateway(gateway_settings, started)
    port = first.port
    events: list[Event] = []
    pub = Publisher(js)
    sub = await connect(ws_url(first), token=token(), options=fast(on_event=events.append))
    published: list[int] = []

    async def publish(count: int) -> None:
        for i in range(count):
            r = await pub.to_tenant("acme", "incident.created", title=f"n{i}", message="m")
            published.append(r.seq)
            await asyncio.sleep(0.01)

    try:
        publishing = asyncio.create_task(publish(60))
        got = await take(sub, 10)
        await first.stop()  # every client is closed (1012) while publishing goes on
        down_at = len(published)
        await asyncio.sleep(0.3)  # the client finds nobody on the port and backs off
        await start_gateway(on_port(gateway_settings, port), started)
        assert len(published) > down_at  # some were published while no gateway ran
        await asyncio.wait_for(publishing, 15)
        got += await take(sub, 50, timeout=15)
        assert [n.seq for n in got] == published
        assert [n.title for n in got] == [f"n{i}" for i in range(60)]
        assert sub.stats.connects >= 2
        recovered = [e for e in events if isinstance(e, Recovered)]
        assert recovered and all(e.welcome.recovered for e in recovered)
        assert not [e for e in events if isinstance(e, Reset)]
        assert State.DISCONNECTED in states(events)
        assert states(events)[-1] is State.LIVE
    finally:
        await sub.close()
    assert sub.state is State.CLOSED


async def test_drain_moves_the_client_to_the_next_gateway(
    gateway_settings: Settings,
    js: JetStreamContext,
    token: Callable[..., str],
    started: list[Gateway],
) -> None:
    one = await start_gateway(gateway_settings, started)
    two = await start_gateway(gateway_settings, started)
    events: list[Event] = []
    pub = Publisher(js)
    async with await connect(
        [ws_url(one), ws_url(two)], token=token(), options=fast(on_event=events.append)
    ) as sub:
        await pub.to_tenant("acme", "incident.created", title="before", message="m")
        assert [n.title for n in await take(sub, 1)] == ["before"]
        await one.drain()  # reconnect frame, then 1012; `one` now refuses new connections
        await pub.to_tenant("acme", "incident.created", title="during", message="m")
        assert [n.title for n in await take(sub, 1)] == ["during"]
        welcome = await sub.wait_connected()
        assert welcome.recovered is True
        assert len(two.registry.sessions) == 1 and not one.registry.sessions
        assert any(isinstance(e, Recovered) for e in events)
        (moved,) = [e for e in events if isinstance(e, StateChanged) and e.delay is not None]
        assert moved.delay == 0.0  # the gateway spreads drains itself: no backoff on top
        assert moved.url == ws_url(one)


async def test_wrong_epoch_is_a_reset_and_never_a_partial_replay(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    pub = Publisher(js)
    old = [
        await pub.to_tenant("acme", "incident.created", title=f"old{i}", message="m")
        for i in range(3)
    ]
    events: list[Event] = []
    async with await connect(
        ws_url(gateway),
        token=token(),
        options=fast(since=old[0].seq, epoch="some-other-stream", on_event=events.append),
    ) as sub:
        assert sub.welcome is not None and sub.welcome.recovered is False
        await pub.to_tenant("acme", "incident.created", title="live", message="m")
        (n,) = await take(sub, 1)
        assert n.title == "live"  # none of old1, old2 presented as if the gap were filled
        resets = [e for e in events if isinstance(e, Reset)]
        assert len(resets) == 1
        assert resets[0].reason == p.ResetReason.EPOCH_CHANGED
        assert resets[0].epoch == gateway.epoch and resets[0].seq >= old[-1].seq
        assert not any(isinstance(e, Recovered) for e in events)
        assert sub.epoch == gateway.epoch


# --- refusals and tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "close"),
    [
        (lambda token: "not-a-jwt", "token_malformed", 4001),
        (lambda token: token(ttl=-60), "token_expired", 4401),
    ],
    ids=["garbage", "expired"],
)
async def test_a_bad_token_is_a_typed_error_without_retry(
    gateway: Gateway,
    token: Callable[..., str],
    make: Callable[[Callable[..., str]], str],
    error: str,
    close: int,
) -> None:
    events: list[Event] = []
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        await connect(ws_url(gateway), token=make(token), options=fast(on_event=events.append))
    assert (refused.value.error, refused.value.close_code) == (error, close)
    assert refused.value.error_code is ErrorCode(error)
    assert refused.value.reason  # the gateway's own words
    assert states(events).count(State.CONNECTING) == 1
    assert states(events)[-1] is State.CLOSED
    assert time.monotonic() - started < 3


async def test_get_token_is_asked_again_after_a_refusal_but_not_forever(
    gateway: Gateway,
) -> None:
    calls = 0

    async def bad_token() -> str:
        nonlocal calls
        calls += 1
        return "still-not-a-jwt"

    with pytest.raises(Refused) as refused:
        await asyncio.wait_for(connect(ws_url(gateway), get_token=bad_token, options=fast()), 10)
    assert refused.value.close_code == 4001
    assert calls == 2  # the first token, one fresh one refused again: stop (protocol.md §12)


async def test_token_is_refreshed_before_it_expires(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    minted: list[float] = []

    async def get_token() -> str:
        minted.append(time.time())
        return token(ttl=3)

    events: list[Event] = []
    pub = Publisher(js)
    async with await connect(
        ws_url(gateway), get_token=get_token, options=fast(on_event=events.append)
    ) as sub:
        assert sub.welcome is not None and sub.welcome.expires_at is not None
        first_expiry = sub.welcome.expires_at
        while time.time() < first_expiry + 1.0:  # past the first token's exp and the gateway's tick
            await asyncio.sleep(0.1)
        await pub.to_tenant("acme", "incident.created", title="still here", message="m")
        (n,) = await take(sub, 1)
        assert n.title == "still here"
        assert len(minted) >= 2  # refreshed at least once, on the same connection
        assert sub.stats.connects == 1
        assert State.DISCONNECTED not in states(events)


# --- backoff -------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_bounded_by_an_exponential_cap() -> None:
    backoff = Backoff(base=0.1, max=2.0)
    rng = random.Random(7)
    assert [backoff.cap(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.cap(10_000) == 2.0  # no overflow for a client retrying for days
    for attempt in range(8):
        delays = [backoff.delay(attempt, rng) for _ in range(400)]
        cap = backoff.cap(attempt)
        assert all(0.0 <= d <= cap for d in delays)
        assert len(set(delays)) == len(delays)  # jittered: no two clients wait the same
        assert min(delays) < cap * 0.1 and max(delays) > cap * 0.9  # spread over the window
    with pytest.raises(InvalidField):
        Backoff(base=0.0)
    with pytest.raises(InvalidField):
        Backoff(base=5.0, max=1.0)


async def test_unreachable_gateway_is_retried_with_growing_delays() -> None:
    events: list[Event] = []
    options = SubscriberOptions(
        backoff=Backoff(base=0.02, max=0.1, healthy_after=1.0),
        max_attempts=5,
        on_event=events.append,
        rng=random.Random(1),
    )
    sub = Subscriber(f"ws://127.0.0.1:{free_port()}/ws", options, token="t")
    with pytest.raises(GaveUp, match="5 attempts in a row failed"):
        await asyncio.wait_for(sub.start(), 5)
    waits = [e for e in events if isinstance(e, StateChanged) and e.state is State.DISCONNECTED]
    assert len(waits) == 4
    assert [e.attempt for e in waits] == [1, 2, 3, 4]
    assert all(e.delay is not None and 0 <= e.delay <= 0.1 for e in waits)
    assert sub.state is State.CLOSED


# --- tidings tail ---------------------------------------------------------------------------------


def gateway_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tidings.gateway"], env=env, stdout=out, stderr=out
        )


async def line_from(stream: asyncio.StreamReader | None, *, timeout: float = 15.0) -> str:
    assert stream is not None
    raw = await asyncio.wait_for(stream.readline(), timeout)
    assert raw, "the stream ended"
    return raw.decode().rstrip("\n")


async def test_tail_json_prints_notifications_and_resumes_across_a_gateway_restart(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Callable[..., str], tmp_path: Path
) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    gateway_env = {
        **clean,
        "TIDINGS_NATS_URLS": nats_server.url,
        "TIDINGS_GATEWAY_HOST": "127.0.0.1",
        "TIDINGS_GATEWAY_PORT": str(port),
        "TIDINGS_GATEWAY_API_PORT": str(free_port()),
        "TIDINGS_GATEWAY_METRICS_PORT": str(free_port()),
        "TIDINGS_GATEWAY_DRAIN_SECONDS": "0.2",
        "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
    }
    log = tmp_path / "gateway.log"
    processes = [gateway_process(gateway_env, log)]
    pub = Publisher(js)
    tail: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(wait_for_port, port, timeout=20)
        tail = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidings", "tail", "--json",
            "--url", f"ws://127.0.0.1:{port}/ws", "--token", token(),
            "--dir", str(tmp_path / "no-dev-stack"),
            env=clean, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert "connected to" in await line_from(tail.stderr)
        first = await pub.to_tenant("acme", "incident.created", title="first", message="m")
        shown = orjson.loads(await line_from(tail.stdout))
        assert (shown["type"], shown["seq"], shown["title"]) == ("notification", first.seq, "first")

        processes[0].send_signal(signal.SIGTERM)  # drain, close 1012, exit
        assert await asyncio.to_thread(processes[0].wait, 15) == 0
        missed = await pub.to_tenant("acme", "incident.created", title="missed", message="m")
        processes.append(gateway_process(gateway_env, log))
        await asyncio.to_thread(wait_for_port, port, timeout=20)
        after = await pub.to_tenant("acme", "incident.created", title="after", message="m")
        shown = [orjson.loads(await line_from(tail.stdout)) for _ in range(2)]
        assert [(s["seq"], s["title"]) for s in shown] == [
            (missed.seq, "missed"),
            (after.seq, "after"),
        ]

        tail.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(tail.communicate(), 10)
        assert tail.returncode == 0, stderr.decode()
        assert stdout == b""  # nothing printed twice
        assert "resumed, nothing missed" in stderr.decode()
    finally:
        if tail is not None and tail.returncode is None:
            tail.kill()
            await tail.wait()
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
