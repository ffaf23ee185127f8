"""The hot path's ordering and batching rules, on recorded frames."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.waiting import until
from tidings.errors import IllegalTransition
from tidings.gateway import connection
from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.frames import HEADROOM


class RecordingSink:
    """Keeps the bytes a socket would have sent (the unit under test is the hub, not a socket)."""

    def __init__(self) -> None:
        self.frames: list[bytearray] = []
        self.closed: tuple[int, str] | None = None

    def write_frame(self, frame: bytearray) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def lines(self) -> list[bytes]:
        out: list[bytes] = []
        for f in self.frames:
            out.extend(_payload(f).split(b"\n"))
        return out


def _payload(frame: bytearray) -> bytes:
    return bytes(frame[HEADROOM:])


def live(hub: Hub, tenant: str, rooms: list[str], sink: RecordingSink) -> Connection:
    conn = Connection(sink)
    conn.tenant = tenant
    conn.move(State.SYNCING)
    hub.add(conn, rooms)
    conn.move(State.LIVE)
    return conn


async def test_one_frame_per_room_run_shared_by_all_members() -> None:
    hub = Hub(window=0.05, on_slow=lambda c: None)
    sinks = [RecordingSink() for _ in range(3)]
    for s in sinks:
        live(hub, "acme", ["tenant"], s)
    for seq in (1, 2, 3):
        hub.publish(seq, "acme", "tenant", b'{"seq":%d}' % seq)
    assert sinks[0].frames == []  # held for the batching window
    await asyncio.sleep(0.1)
    assert all(len(s.frames) == 1 for s in sinks)
    assert sinks[0].frames[0] is sinks[1].frames[0]  # the same bytes object, built once
    assert sinks[0].lines() == [b'{"seq":1}', b'{"seq":2}', b'{"seq":3}']
    assert hub.deliveries == 9


async def test_stream_order_is_kept_across_rooms_of_one_connection() -> None:
    hub = Hub(window=1.0, on_slow=lambda c: None)
    both, only_user = RecordingSink(), RecordingSink()
    live(hub, "acme", ["tenant", "user:alice"], both)
    live(hub, "acme", ["user:alice"], only_user)
    hub.publish(1, "acme", "user:alice", b"1")
    hub.publish(2, "acme", "tenant", b"2")
    hub.publish(3, "acme", "user:alice", b"3")
    hub.publish(4, "", "broadcast", b"4")
    hub.publish(5, "acme", "tenant", b"5")
    hub.flush()
    assert both.lines() == [b"1", b"2", b"3", b"4", b"5"]
    assert only_user.lines() == [b"1", b"3", b"4"]


async def test_a_connection_in_several_rooms_gets_one_write_per_flush() -> None:
    """Coalesced per connection: interleaved news of its rooms and a broadcast arrive in one
    frame, in stream order; a connection in one of those rooms still shares that room's frame."""
    hub = Hub(window=1.0, on_slow=lambda c: None)
    both, tenant_only, other = RecordingSink(), RecordingSink(), RecordingSink()
    live(hub, "acme", ["tenant", "user:alice"], both)
    live(hub, "acme", ["tenant"], tenant_only)
    live(hub, "acme", ["tenant"], other)
    for seq, room in enumerate(["user:alice", "tenant", "user:alice", "tenant"], start=1):
        hub.publish(seq, "acme", room, b"%d" % seq)
    hub.flush()
    assert len(both.frames) == 1
    assert both.lines() == [b"1", b"2", b"3", b"4"]
    assert tenant_only.lines() == [b"2", b"4"] and len(tenant_only.frames) == 1
    assert tenant_only.frames[0] is other.frames[0]  # the room's frame, built once
    assert hub.deliveries == 4 + 2 + 2
    hub.publish(5, "acme", "tenant", b"5")
    hub.publish(6, "", "broadcast", b"6")
    hub.publish(7, "acme", "tenant", b"7")
    hub.flush()
    assert [len(s.frames) for s in (both, tenant_only, other)] == [2, 2, 2]
    assert tenant_only.lines()[2:] == [b"5", b"6", b"7"]
    assert both.lines()[4:] == [b"5", b"6", b"7"]


async def test_a_coalesced_frame_stays_within_the_payload_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidings.gateway import fanout

    monkeypatch.setattr(fanout, "MAX_PAYLOAD", 25)
    hub = Hub(window=1.0, on_slow=lambda c: None)
    sink = RecordingSink()
    live(hub, "acme", ["tenant", "user:alice"], sink)
    for seq in range(1, 9):
        hub.publish(seq, "acme", "tenant" if seq % 2 else "user:alice", b"%09d" % seq)
    hub.flush()
    assert sink.lines() == [b"%09d" % seq for seq in range(1, 9)]
    assert all(len(f) - HEADROOM <= 25 for f in sink.frames)
    assert len(sink.frames) == 4


async def test_a_muted_connection_in_several_rooms_gets_its_own_merged_frame() -> None:
    hub = Hub(window=1.0, on_slow=lambda c: None)
    sink = RecordingSink()
    conn = live(hub, "acme", ["tenant", "user:alice"], sink)
    conn.muted = frozenset({"audit"})
    hub.publish(1, "acme", "tenant", b"1", "audit")
    hub.publish(2, "acme", "user:alice", b"2", "incident")
    hub.publish(3, "acme", "tenant", b"3", "incident")
    hub.flush()
    assert sink.lines() == [b"2", b"3"] and len(sink.frames) == 1
    assert conn.last_seq == 3
    assert (hub.deliveries, hub.muted) == (2, 1)


async def test_a_slow_consumer_in_several_rooms_is_reported_once_others_receive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "MAX_PENDING", 2)
    slow: list[Connection] = []
    hub = Hub(window=1.0, on_slow=slow.append)
    fast = RecordingSink()
    live(hub, "acme", ["tenant", "user:alice"], fast)
    laggard = Connection(RecordingSink())
    laggard.tenant = "acme"
    laggard.move(State.SYNCING)
    hub.add(laggard, ["tenant", "user:alice"])
    for seq, room in enumerate(["tenant", "user:alice", "tenant"], start=1):
        hub.publish(seq, "acme", room, b"%d" % seq)
    hub.flush()
    assert slow == [laggard]
    assert fast.lines() == [b"1", b"2", b"3"]


class SlowSink(RecordingSink):
    """A socket whose send takes 20 ms of CPU: a costly flush."""

    sent_at = 0.0  # loop time the last send ended
    burn = 0.02  # CPU seconds per send

    def write_frame(self, frame: bytearray) -> None:
        end = time.thread_time() + self.burn
        while time.thread_time() < end:
            pass
        super().write_frame(frame)
        self.sent_at = asyncio.get_running_loop().time()


async def test_after_a_late_flush_the_next_waits_twice_its_cost_at_most_window_max() -> None:
    """A flush behind its time (the loop was busy with other work) is followed by a pause of
    twice its CPU cost, counted from its end and capped by window_max: under load flushes
    space out and each write carries more."""
    hub = Hub(window=0.001, window_max=0.5, on_slow=lambda c: None)
    sink = SlowSink()
    sink.burn = 0.1
    live(hub, "acme", ["tenant"], sink)
    loop = asyncio.get_running_loop()
    hub.publish(1, "acme", "tenant", b"1")
    time.sleep(0.01)  # the loop busy (the ingest) when the flush is due: it runs late
    await until(lambda: sink.frames, what="the late flush")
    ended = sink.sent_at
    hub.publish(2, "acme", "tenant", b"2")
    hub.publish(3, "acme", "tenant", b"3")
    await asyncio.sleep(0.1)
    assert len(sink.frames) == 1  # spaced: not yet
    await until(lambda: len(sink.frames) == 2, what="the spaced flush")
    assert loop.time() - ended >= 2 * 0.1 - 0.002  # twice its 100 ms (clock: ~1 ms)
    assert sink.lines() == [b"1", b"2", b"3"]


async def test_the_spacing_never_exceeds_window_max() -> None:
    hub = Hub(window=0.001, window_max=0.05, on_slow=lambda c: None)
    sink = SlowSink()
    sink.burn = 0.2  # twice that is 0.4 s: far beyond window_max
    live(hub, "acme", ["tenant"], sink)
    loop = asyncio.get_running_loop()
    hub.publish(1, "acme", "tenant", b"1")
    time.sleep(0.01)  # late
    await until(lambda: sink.frames, what="the late flush")
    began = loop.time()
    hub.publish(2, "acme", "tenant", b"2")
    await until(lambda: len(sink.frames) == 2, what="the flush, window_max after the publish")
    assert loop.time() - began < 0.3  # the cap (50 ms, and the send's 200 ms), not 0.4 s
    assert sink.lines() == [b"1", b"2"]


async def test_a_notification_waits_only_within_a_costly_flushs_spacing() -> None:
    """At a low rate a notification goes out at once — the first, those after cheap flushes
    (one user's), and one after a quiet spell whatever the last flush cost; one arriving within
    twice a costly flush's cost after it ended waits for the rest of that, at most the window
    when the flush was on time."""
    hub = Hub(window=0.5, window_max=5.0, on_slow=lambda c: None)
    sink = RecordingSink()
    live(hub, "acme", ["user:alice"], sink)
    loop = asyncio.get_running_loop()
    for seq in (1, 2, 3):
        began = loop.time()
        hub.publish(seq, "acme", "user:alice", b"%d" % seq)
        await until(lambda n=seq: len(sink.frames) == n, what="a flush after a cheap one")
        assert loop.time() - began < 0.25  # far inside the 0.5 s window
    costly = SlowSink()
    costly.burn = 0.5  # CPU: costly by either clock; its spacing (1 s) is twice the window
    live(hub, "acme", ["tenant"], costly)
    hub.publish(4, "acme", "tenant", b"4")
    await until(lambda: costly.frames, timeout=5, what="the costly flush (on time)")
    began = loop.time()
    hub.publish(5, "acme", "user:alice", b"5")
    hub.publish(6, "acme", "user:alice", b"6")
    await until(lambda: len(sink.frames) == 4, timeout=5, what="the flush after a costly one")
    waited, spaced_until = loop.time() - began, costly.sent_at + 1.0 - began
    # It waited (the rest of the spacing, or the window if shorter), and no longer than the
    # window (the spacing would have been 1 s; the poll adds up to 20 ms).
    assert min(0.5, spaced_until) - 0.002 <= waited < 0.5 + 0.2
    await asyncio.sleep(1.1)  # a quiet spell: the spacing of the last flush is over
    began = loop.time()
    hub.publish(7, "acme", "user:alice", b"7")
    await until(lambda: len(sink.frames) == 5, what="the flush after a quiet spell")
    assert loop.time() - began < 0.25
    assert sink.lines() == [b"1", b"2", b"3", b"5", b"6", b"7"]


def test_other_tenants_rooms_never_receive() -> None:
    hub = Hub(window=0, on_slow=lambda c: None)
    a, b = RecordingSink(), RecordingSink()
    live(hub, "acme", ["tenant", "user:alice"], a)
    live(hub, "other", ["tenant", "user:alice"], b)
    hub.publish(1, "acme", "tenant", b"1")
    hub.publish(2, "acme", "user:alice", b"2")
    assert a.lines() == [b"1", b"2"]
    assert b.frames == []


def test_syncing_connections_buffer_items_not_frames() -> None:
    hub = Hub(window=0, on_slow=lambda c: None)
    sink = RecordingSink()
    conn = Connection(sink)
    conn.tenant = "acme"
    conn.move(State.SYNCING)
    hub.add(conn, ["tenant"])
    hub.publish(7, "acme", "tenant", b"7")
    assert sink.frames == []
    assert conn.pending == [(7, b"7")]
    conn.last_seq = 7
    conn.write_items(conn.pending)  # already seen: nothing written
    assert sink.frames == []


def test_a_connection_holding_too_much_while_syncing_is_reported_others_keep_receiving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "MAX_PENDING", 3)
    slow: list[Connection] = []
    hub = Hub(window=0, on_slow=slow.append)
    fast_sink = RecordingSink()
    live(hub, "acme", ["tenant"], fast_sink)
    laggard = Connection(RecordingSink())
    laggard.tenant = "acme"
    laggard.move(State.SYNCING)  # its resume takes long: live frames are held for it
    hub.add(laggard, ["tenant"])
    for seq in (1, 2, 3):
        hub.publish(seq, "acme", "tenant", b"x")
    assert slow == []
    hub.publish(4, "acme", "tenant", b"x")
    assert slow == [laggard]
    assert len(fast_sink.frames) == 4


def test_tenant_interest_is_reference_counted() -> None:
    added: list[str] = []
    removed: list[str] = []
    hub = Hub(
        window=0,
        on_slow=lambda c: None,
        on_tenant_added=added.append,
        on_tenant_removed=removed.append,
    )
    c1 = live(hub, "acme", ["tenant"], RecordingSink())
    c2 = live(hub, "acme", ["tenant"], RecordingSink())
    assert added == ["acme"]
    hub.remove(c1)
    assert removed == []
    hub.remove(c2)
    hub.remove(c2)  # idempotent
    assert removed == ["acme"]
    assert hub.rooms == {}


def test_illegal_transitions_raise() -> None:
    conn = Connection(RecordingSink())
    with pytest.raises(IllegalTransition):
        conn.move(State.LIVE)  # hello first
    conn.move(State.CLOSED)
    with pytest.raises(IllegalTransition):
        conn.move(State.SYNCING)


# --- muted domains (the inbox's preferences) ---------------------------------------------------


async def test_a_muted_domain_is_left_out_for_that_connection_only() -> None:
    hub = Hub(window=0.05, on_slow=lambda c: None)
    plain, muting = RecordingSink(), RecordingSink()
    live(hub, "acme", ["tenant"], plain)
    conn = live(hub, "acme", ["tenant"], muting)
    conn.muted = frozenset({"audit"})
    hub.publish(1, "acme", "tenant", b"1", "incident")
    hub.publish(2, "acme", "tenant", b"2", "audit")
    hub.publish(3, "acme", "tenant", b"3", None)  # critical: never muted
    hub.publish(4, "acme", "tenant", b"4", "audit")
    hub.flush()
    assert plain.lines() == [b"1", b"2", b"3", b"4"]
    assert muting.lines() == [b"1", b"3"]
    assert plain.frames[0] is not muting.frames[0]  # its own frame, the shared one untouched
    assert conn.last_seq == 3  # moved only over what it was sent
    assert (hub.deliveries, hub.muted) == (6, 2)


async def test_a_run_with_nothing_muted_for_it_shares_the_frame() -> None:
    hub = Hub(window=0.05, on_slow=lambda c: None)
    plain, muting = RecordingSink(), RecordingSink()
    live(hub, "acme", ["tenant"], plain)
    live(hub, "acme", ["tenant"], muting).muted = frozenset({"billing"})
    hub.publish(1, "acme", "tenant", b"1", "incident")
    hub.publish(2, "acme", "tenant", b"2", "incident")
    hub.flush()
    assert muting.frames[0] is plain.frames[0]
    hub.publish(3, "acme", "tenant", b"3", "billing")  # all of the run muted: no frame at all
    hub.flush()
    assert len(muting.frames) == 1
    assert len(plain.frames) == 2


async def test_what_is_held_while_syncing_is_filtered_too() -> None:
    hub = Hub(window=0.05, on_slow=lambda c: None)
    conn = Connection(RecordingSink())
    conn.tenant = "acme"
    conn.muted = frozenset({"audit"})
    conn.move(State.SYNCING)
    hub.add(conn, ["tenant"])
    hub.publish(5, "acme", "tenant", b"5", "audit")
    hub.publish(6, "acme", "tenant", b"6", "incident")
    hub.flush()
    assert conn.pending == [(6, b"6")]


def test_mute_key() -> None:
    from tidings.gateway.fanout import mute_key

    assert mute_key("work_permit.status_changed", critical=False) == "work_permit"
    assert mute_key("work_permit.status_changed", critical=True) is None
