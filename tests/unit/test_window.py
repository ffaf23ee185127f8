"""The per-tenant resume window: completeness, bounds and backfill merging."""

from __future__ import annotations

import time

from tidings.gateway.window import SEQ, Window, entry


def test_unarmed_window_answers_nothing() -> None:
    w = Window(max_count=10, max_age=60)
    w.add(5, "tenant", b"5")
    assert not w.covers(4)


def test_armed_window_covers_from_the_arm_point() -> None:
    w = Window(max_count=10, max_age=60)
    w.arm(last_seq=10)
    for seq in (11, 13, 20):
        w.add(seq, "tenant", str(seq).encode())
    assert w.covers(10)
    assert w.covers(15)
    assert not w.covers(9)  # 10 itself might be one of ours: unknown
    assert w.after(12, {"tenant"}) == [(13, b"13"), (20, b"20")]
    assert w.after(12, {"user:bob"}) == []


def test_count_bound_moves_completeness_forward() -> None:
    w = Window(max_count=3, max_age=60)
    w.arm(0)
    for seq in range(1, 6):
        w.add(seq, "tenant", b"")
    assert [e[SEQ] for e in w.entries] == [3, 4, 5]
    assert w.covers(2)
    assert not w.covers(1)


def test_age_bound() -> None:
    w = Window(max_count=100, max_age=10)
    w.arm(0)
    w.add(1, "tenant", b"", now=100.0)
    w.add(2, "tenant", b"", now=105.0)
    w.add(3, "tenant", b"", now=111.0)  # 1 is now older than 10 s
    assert [e[SEQ] for e in w.entries] == [2, 3]
    assert not w.covers(0)
    assert w.covers(1)


def test_backfill_merges_without_duplicates() -> None:
    w = Window(max_count=100, max_age=1e9)
    w.arm(50)
    w.add(49, "tenant", b"49")  # arrived live before the arm point was read
    w.add(51, "tenant", b"51")
    w.merge(
        [entry(s, "tenant", str(s).encode(), 0.0 + 1e12) for s in (40, 45, 49)],
        start=40,
        generation=w.generation,
    )
    assert [e[SEQ] for e in w.entries] == [40, 45, 49, 51]
    assert w.covers(39)


def test_disarm_forgets_everything() -> None:
    w = Window(max_count=100, max_age=60)
    w.arm(0)
    w.add(1, "tenant", b"")
    w.disarm()
    assert not w.covers(5)
    assert not w.entries


def test_a_read_begun_before_a_disconnect_never_completes_the_window() -> None:
    w = Window(max_count=100, max_age=1e9)
    w.arm(50)
    began = w.generation
    w.disarm()  # NATS dropped while JetStream was read ...
    w.arm(80)  # ... and came back: 51..80 may have been missed live
    w.merge([entry(45, "tenant", b"45", 1e12)], start=40, generation=began)
    assert not w.covers(39)
    assert not w.covers(60)
    assert w.covers(80)


def test_a_replay_leaves_out_the_muted_domains() -> None:
    w = Window(max_count=100, max_age=60)
    w.arm(0)
    w.add(1, "tenant", b"1", mute="incident")
    w.add(2, "tenant", b"2", mute="audit")
    w.add(3, "tenant", b"3", mute=None)  # critical
    w.add(4, "user:bob", b"4", mute="incident")
    assert w.after(0, {"tenant"}) == [(1, b"1"), (2, b"2"), (3, b"3")]
    assert w.after(0, {"tenant"}, frozenset({"audit"})) == [(1, b"1"), (3, b"3")]
    assert w.after(1, {"tenant"}, frozenset({"audit", "incident"})) == [(3, b"3")]


def test_a_read_to_the_bound_is_remembered_until_the_next_disarm() -> None:
    """After a read that reached the bound, a resume from before it is beyond the bound: no
    second read for it (one read per tenant per wave); a disarm starts a new wave."""
    now = time.monotonic()
    w = Window(max_count=10, max_age=60)
    w.arm(20)
    w.merge([entry(s, "r", b"x", now) for s in (12, 15, 18)], start=10, generation=0)
    assert not w.reached  # read from an asker's point: an older one may still be read
    w.merge([entry(5, "r", b"x", now)], start=3, generation=0, reached=True)
    assert w.reached and w.covers(2) and not w.covers(1)
    w.disarm()
    assert not w.reached
    w.arm(30)
    w.merge([], start=25, generation=0, reached=True)  # begun before the disarm: stale
    assert not w.reached and not w.covers(24)


def test_empty_windows_share_one_container_and_fill_again_after_a_disarm() -> None:
    # A gateway with a tenant per user holds a window per connection, mostly empty.
    a, b = Window(max_count=3, max_age=60), Window(max_count=3, max_age=60)
    assert a.entries is b.entries
    assert a.after(0, {"tenant"}) == []
    a.arm(0)
    a.add(1, "tenant", b"1")
    assert a.entries is not b.entries and not b.entries
    a.disarm()
    assert a.entries is b.entries
    a.arm(5)
    a.merge([], start=6, generation=a.generation)  # a backfill that found nothing
    for seq in (6, 7, 8, 9):
        a.add(seq, "tenant", str(seq).encode())
    assert a.after(5, {"tenant"}) == [(7, b"7"), (8, b"8"), (9, b"9")]
    assert not b.entries


def test_held_entries_leave_the_collectors_sight() -> None:
    """A busy gateway holds hundreds of thousands of entries: after one pass of the cyclic
    collector none of them may still be tracked, or every full collection walks them all."""
    import gc

    w = Window(max_count=100, max_age=60)
    w.arm(0)
    for s in range(2, 51):
        w.add(s, "tenant", b"x" * 10, mute="incident" if s % 2 else None)
    w.merge([entry(1, "tenant", b"y", time.monotonic())], start=1, generation=0)
    gc.collect()
    assert len(w.entries) == 50
    assert not any(gc.is_tracked(e) for e in w.entries)
