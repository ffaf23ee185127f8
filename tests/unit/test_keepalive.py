"""The keepalive's rule: a client is closed when it stayed silent for two intervals *and* did
not answer the last ping it was sent — not because the gateway's pass came late."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.gateway.connection import GONE, Connection, State
from tidings.gateway.registry import Registry
from tidings.gateway.upkeep import Keepalive


@dataclass(eq=False)
class Client:
    """A registry member as the keepalive sees it: pings it got, a close, its last frame."""

    conn: Connection
    seen: float
    claims: None = None
    pings: int = 0
    closed: list[tuple[int, str]] = field(default_factory=list)

    def ping(self) -> None:
        self.pings += 1

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def refuse(self, error: object, *, code: object = None) -> None:
        raise AssertionError("not expected")

    def cut(self) -> None:
        raise AssertionError("not expected")


def live_client(seen: float) -> Client:
    conn = Connection(GONE)
    conn.move(State.SYNCING)
    conn.move(State.LIVE)
    return Client(conn, seen)


def test_a_client_that_answered_is_pinged_again_however_late_the_pass() -> None:
    keepalive = Keepalive(Registry(), interval=25.0)
    client = live_client(seen=0.0)
    keepalive.check(client, 1.0)  # pinged at 1 s
    client.seen = 1.2  # its pong
    keepalive.check(client, 120.0)  # the next pass, 119 s later (a loaded gateway)
    assert client.closed == [] and client.pings == 2
    keepalive.check(client, 200.0)  # that ping went unanswered for 80 s
    assert client.closed == [(1011, "keepalive ping timeout")]


def test_a_silent_client_is_closed_after_two_intervals() -> None:
    keepalive = Keepalive(Registry(), interval=25.0)
    client = live_client(seen=0.0)
    keepalive.check(client, 25.0)
    keepalive.check(client, 50.0)  # silent, but only two intervals: pinged again
    assert client.closed == [] and client.pings == 2
    keepalive.check(client, 75.0)
    assert client.closed == [(1011, "keepalive ping timeout")]
