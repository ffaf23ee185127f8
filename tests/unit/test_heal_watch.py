"""The heal bound on its own: a registry, members that record what they were sent, no NATS."""

from __future__ import annotations

from typing import Any

import orjson

from tidings.auth import Claims
from tidings.gateway.connection import Connection, State
from tidings.gateway.frames import HEADROOM
from tidings.gateway.heal import HealWatch
from tidings.gateway.registry import Registry


class Sink:
    def __init__(self) -> None:
        self.objs: list[dict[str, Any]] = []

    def write_frame(self, frame: bytearray) -> None:
        self.objs.extend(orjson.loads(line) for line in bytes(frame[HEADROOM:]).split(b"\n"))

    def close(self, code: int, reason: str) -> None:
        pass


class Member:
    def __init__(self, state: State) -> None:
        self.sink = Sink()
        self.conn = Connection(self.sink)
        self.conn.move(State.SYNCING)
        if state is State.LIVE:
            self.conn.move(State.LIVE)
        self.claims: Claims | None = Claims("acme", "alice")
        self.seen = 0.0
        self.closed: list[tuple[int, str]] = []

    def ping(self) -> None: ...
    def refuse(self, error: object, *, code: object = None) -> None: ...
    def cut(self) -> None: ...

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def registry_with(*members: Member) -> Registry:
    registry = Registry()
    registry.set_healed(True)
    for m in members:
        registry.add(m)  # type: ignore[arg-type]
    return registry


async def test_an_unhealed_loss_past_the_bound_sends_everyone_away_once() -> None:
    a, b = Member(State.LIVE), Member(State.SYNCING)
    registry = registry_with(a, b)
    watch = HealWatch(registry, timeout=10.0, spread=0.0)
    registry.set_healed(False, now=100.0)
    await watch.step(109.9)
    assert not a.sink.objs and not b.sink.objs  # within the bound: they wait for the heal
    await watch.step(110.0)
    for m in (a, b):
        assert [(o["type"], o["reason"]) for o in m.sink.objs] == [
            ("reconnect", "nats_unavailable")
        ]
        assert m.closed == [(1013, "unavailable")]
    await watch.step(120.0)
    assert len(a.sink.objs) == 1  # once per loss
    assert watch.sent_away == 2


async def test_a_heal_in_time_or_a_drain_leaves_the_connections_alone() -> None:
    a = Member(State.LIVE)
    registry = registry_with(a)
    watch = HealWatch(registry, timeout=10.0, spread=0.0)
    registry.set_healed(False, now=100.0)
    registry.set_healed(True)
    assert registry.lost_at is None
    await watch.step(200.0)
    registry.set_healed(False, now=300.0)
    registry.draining = True  # the drain sends them away itself
    await watch.step(400.0)
    assert not a.sink.objs and not a.closed


async def test_waiting_for_the_heal_is_bounded() -> None:
    registry = registry_with()
    registry.set_healed(False)
    assert await registry.wait_healed(0.05) is False
    registry.set_healed(True)
    assert await registry.wait_healed(0.05) is True
