"""The resume step on its own: what a syncing connection is sent, in which order, and when it
goes live — driven with windows in memory and no NATS (a stand-in for the live side)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from tidings.auth import Claims
from tidings.errors import Unavailable
from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.frames import HEADROOM
from tidings.gateway.registry import Registry
from tidings.gateway.resume import Resume
from tidings.gateway.window import Window
from tidings.subjects import BROADCAST_TENANT

EPOCH = "e1"
HEAL_TIMEOUT = 0.3
CLAIMS = Claims("acme", "alice", roles=frozenset({"ops"}))


class Sink:
    def __init__(self) -> None:
        self.objs: list[dict[str, Any]] = []

    def write_frame(self, frame: bytearray) -> None:
        self.objs.extend(orjson.loads(line) for line in bytes(frame[HEADROOM:]).split(b"\n"))

    def close(self, code: int, reason: str) -> None:
        pass


class FakeLive:
    """The parts of :class:`Live` a resume reads: windows, the head, ensure and cover."""

    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}
        self.head = 0
        self.on_cover: Any = None  # called inside cover (to drop NATS mid-resume)
        self.disarmed = 0

    def window(self, tenant: str, armed_at: int) -> Window:
        w = self.windows[tenant] = Window(max_count=100, max_age=60)
        w.arm(armed_at)
        return w

    async def ensure(self, tenant: str) -> Window:
        return self.windows[tenant]

    async def cover(self, tenant: str, since: int) -> bool:
        if self.on_cover is not None:
            self.on_cover()
        await asyncio.sleep(0)
        return self.windows[tenant].covers(since)

    def disarm_all(self) -> None:
        self.disarmed += 1
        for w in self.windows.values():
            w.disarm()


def line(seq: int, room: str) -> bytes:
    return orjson.dumps({"type": "notification", "seq": seq, "room": room})


@pytest.fixture
def parts() -> tuple[Resume, FakeLive, Registry, Counter]:
    live = FakeLive()
    tenant = live.window("acme", 10)
    everyone = live.window(BROADCAST_TENANT, 10)
    for seq, room in ((11, "tenant"), (12, "user:bob"), (14, "user:alice")):
        tenant.add(seq, room, line(seq, room))
    everyone.add(13, "broadcast", line(13, "broadcast"))
    live.head = 14
    registry = Registry()
    registry.nats_connected = True
    registry.set_healed(True)
    outcomes = Counter("resumes", "by outcome", ["outcome"], registry=CollectorRegistry())
    hub = Hub(window=0, on_slow=lambda c: None)
    resume = Resume(
        live,  # type: ignore[arg-type]
        hub,
        registry,
        epoch=EPOCH,
        outcomes=outcomes,
        heal_timeout=HEAL_TIMEOUT,
    )
    return resume, live, registry, outcomes


def syncing() -> tuple[Connection, Sink]:
    sink = Sink()
    conn = Connection(sink)
    conn.tenant, conn.user = "acme", "alice"
    conn.rooms = {"tenant", "user:alice", "broadcast"}
    conn.move(State.SYNCING)
    return conn, sink


def count(outcomes: Counter, outcome: str) -> float:
    return float(outcomes.labels(outcome)._value.get())


async def test_a_first_hello_is_welcomed_at_the_head_and_goes_live(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, *_ = parts
    conn, sink = syncing()
    assert await resume.resync(conn, since=None, epoch=None, claims=CLAIMS, first=True) is False
    assert [o["type"] for o in sink.objs] == ["welcome", "synced"]
    welcome = sink.objs[0]
    assert (welcome["seq"], welcome["epoch"], welcome["recovered"]) == (14, EPOCH, False)
    assert welcome["roles"] == ["ops"]
    assert conn.state is State.LIVE and conn.last_seq == 14


async def test_a_resume_from_memory_replays_only_the_rooms_of_the_connection_in_order(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, _, _, outcomes = parts
    conn, sink = syncing()
    conn.pending = [(14, line(14, "user:alice")), (15, line(15, "tenant"))]  # live meanwhile
    assert await resume.resync(conn, since=10, epoch=EPOCH, claims=CLAIMS, first=True) is True
    kinds = [(o["type"], o.get("seq")) for o in sink.objs]
    assert kinds == [
        ("welcome", 14),
        ("notification", 11),
        ("notification", 13),
        ("notification", 14),  # once, although it was both in the window and pending
        ("notification", 15),
        ("synced", 15),
    ]
    assert count(outcomes, "memory") == 1
    assert conn.state is State.LIVE


async def test_another_epoch_is_a_reset_never_a_partial_replay(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, _, _, outcomes = parts
    conn, sink = syncing()
    assert await resume.resync(conn, since=10, epoch="old", claims=CLAIMS, first=True) is False
    reset = [o for o in sink.objs if o["type"] == "reset"]
    assert [(r["reason"], r["seq"], r["epoch"]) for r in reset] == [("epoch_changed", 14, EPOCH)]
    assert not [o for o in sink.objs if o["type"] == "notification"]
    assert count(outcomes, "not_recovered") == 1


async def test_beyond_the_window_it_is_a_reset_out_of_range(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, *_ = parts
    conn, sink = syncing()
    assert await resume.resync(conn, since=3, epoch=EPOCH, claims=CLAIMS, first=True) is False
    (reset,) = [o for o in sink.objs if o["type"] == "reset"]
    assert reset["reason"] == "out_of_range"


async def test_a_nats_loss_during_a_hello_resume_is_refused_for_a_retry(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, live, _, _ = parts
    live.on_cover = resume.lost
    conn, sink = syncing()
    with pytest.raises(Unavailable):
        await resume.resync(conn, since=10, epoch=EPOCH, claims=CLAIMS, first=True)
    assert not sink.objs


async def test_a_nats_loss_during_a_heal_leaves_the_connection_syncing(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, live, _, _ = parts
    live.on_cover = resume.lost
    conn, sink = syncing()
    assert await resume.resync(conn, since=10, epoch=EPOCH, claims=CLAIMS, first=False) is False
    assert conn.state is State.SYNCING and not sink.objs


class Member:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.claims: Claims | None = CLAIMS
        self.seen = 0.0

    def ping(self) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def refuse(self, error: object, *, code: object = None) -> None: ...
    def cut(self) -> None: ...


async def test_a_loss_trusts_nothing_and_the_heal_resumes_every_syncing_connection(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, live, registry, _ = parts
    conn, sink = syncing()
    conn.move(State.LIVE)
    conn.last_seq = 14
    registry.add(Member(conn))
    resume.lost()
    assert (registry.nats_connected, registry.generation, live.disarmed) == (False, 1, 1)
    assert conn.state is State.SYNCING
    live.window("acme", 16)  # re-armed after the reconnect
    live.window(BROADCAST_TENANT, 16)
    live.head = 16
    registry.nats_connected = True
    resume.heal()
    for _ in range(5):
        await asyncio.sleep(0)
    assert conn.state.value == "live"  # (a plain `is` reads as unreachable to mypy)
    assert [(o["type"], o.get("reason")) for o in sink.objs] == [
        ("reset", "out_of_range"),  # what came while NATS was away is unknown
        ("synced", None),
    ]
    assert conn.last_seq == 16


async def test_a_resume_while_not_healed_waits_for_the_heal_instead_of_a_reset(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, live, registry, outcomes = parts
    resume.lost()  # windows disarmed: answering now could only be a reset
    registry.nats_connected = True  # the socket is back, the re-arm is not done
    conn, sink = syncing()
    task = asyncio.ensure_future(
        resume.resync(conn, since=10, epoch=EPOCH, claims=CLAIMS, first=True)
    )
    await asyncio.sleep(HEAL_TIMEOUT / 3)
    assert not task.done() and not sink.objs
    tenant, everyone = live.window("acme", 10), live.window(BROADCAST_TENANT, 10)
    tenant.add(11, "tenant", line(11, "tenant"))
    everyone.add(13, "broadcast", line(13, "broadcast"))
    resume.heal()
    assert await task is True
    assert [(o["type"], o.get("seq")) for o in sink.objs] == [
        ("welcome", 14),
        ("notification", 11),
        ("notification", 13),
        ("synced", 13),
    ]
    assert count(outcomes, "memory") == 1


async def test_a_resume_that_outwaits_the_heal_bound_is_refused_for_a_retry_not_reset(
    parts: tuple[Resume, FakeLive, Registry, Counter],
) -> None:
    resume, _, registry, _ = parts
    resume.lost()
    registry.nats_connected = True
    conn, sink = syncing()
    with pytest.raises(Unavailable):
        await resume.resync(conn, since=10, epoch=EPOCH, claims=CLAIMS, first=True)
    assert not sink.objs and conn.state is State.SYNCING
