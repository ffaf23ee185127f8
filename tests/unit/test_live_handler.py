"""The live handler: one stored message in, its wire line in the window and the hub, its
lag observed once; a message it cannot route or decode is counted and skipped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.msg import Msg

from tidings.envelope import Notification
from tidings.gateway import stamps
from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.frames import HEADROOM
from tidings.gateway.live import Live, stored_at
from tidings.gateway.window import BODY, SEQ, Window
from tidings.protocol import encode_notification
from tidings.subjects import BROADCAST_AUDIENCE, Audience, AudienceKind

NOW = datetime.now(UTC)


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[bytearray] = []

    def write_frame(self, frame: bytearray) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        pass


def note(title: str = "t", audience: Audience | None = None) -> Notification:
    return Notification(
        id=f"n-{title}",
        tenant="acme",
        event="incident.created",
        audience=audience or Audience(),
        time=NOW,
        title=title,
        message="m",
    )


def stored(subject: str, payload: bytes, seq: int | None, stamp: str | None = "default") -> Msg:
    """A message as nats-py hands over a republished one (the headers the stream adds)."""
    headers = {"Nats-Stream": "TIDINGS", "Nats-Subject": subject.removeprefix("live.")}
    if seq is not None:
        headers["Nats-Sequence"] = str(seq)
    if stamp == "default":
        headers["Nats-Time-Stamp"] = (datetime.now(UTC) - timedelta(milliseconds=3)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f123Z"
        )
    elif stamp is not None:
        headers["Nats-Time-Stamp"] = stamp
    return Msg(_client=None, subject=subject, data=payload, headers=headers)  # type: ignore[arg-type]


def raw_block(headers: dict[str, str]) -> bytes | None:
    """The header block nats-server writes for ``headers`` (what nats-py's parser hands on)."""
    if not headers:
        return None
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


Hand = Callable[[Live, Msg], Awaitable[None]]


@pytest.fixture(params=["queue", "direct"])
def hand(request: pytest.FixtureRequest) -> Hand:
    """A message handed to the live handler through nats-py's queue path (a parsed header
    dict in a ``Msg``) or the direct one (the raw header block from the parser)."""

    async def through_queue(live: Live, msg: Msg) -> None:
        await live._on_message(msg)

    async def direct(live: Live, msg: Msg) -> None:
        live._on_raw(msg.subject.encode(), msg.data, raw_block(msg.headers or {}))

    return through_queue if request.param == "queue" else direct


@pytest.fixture
def setup() -> tuple[Live, RecordingSink, list[float]]:
    hub = Hub(window=0.002, on_slow=lambda c: None)
    lags: list[float] = []
    live = Live(
        None,  # type: ignore[arg-type]  # the handler never talks to NATS
        None,  # type: ignore[arg-type]
        hub,
        stream="TIDINGS",
        window_count=100,
        window_age=60,
        replay_max=100,
        replay_concurrency=1,
        linger=1,
        timeout=1,
        on_delivered=lags.append,
    )
    window = Window(max_count=100, max_age=60)
    window.arm(0)
    live.windows["acme"] = window
    sink = RecordingSink()
    conn = Connection(sink)
    conn.tenant = "acme"
    conn.move(State.SYNCING)
    hub.join(conn, "tenant")
    hub.join(conn, "user:alice")
    conn.move(State.LIVE)
    return live, sink, lags


async def test_a_message_reaches_window_hub_and_metrics(
    setup: tuple[Live, RecordingSink, list[float]],
    hand: Hand,
) -> None:
    live, sink, lags = setup
    tenant_note = note("a")
    user_note = note("b", Audience(AudienceKind.USER, "alice"))
    await hand(live, stored("live.tenant.acme.incident.created", tenant_note.to_bytes(), 7))
    await hand(
        live, stored("live.tenant.acme.user.alice.incident.created", user_note.to_bytes(), 9)
    )
    live.hub.flush()
    expected = [
        encode_notification(tenant_note, 7, "tenant"),
        encode_notification(user_note, 9, "user:alice"),
    ]
    assert [e[BODY] for e in live.windows["acme"].entries] == expected
    # Two rooms of one connection: one write holding both lines, in stream order.
    assert len(sink.frames) == 1
    assert sink.frames[0][HEADROOM:] == b"\n".join(expected)
    assert live.head == 9
    assert live.dropped == 0
    assert len(lags) == 2
    assert all(0.003 <= lag < 5.0 for lag in lags)  # stored 3 ms before it was handed over


async def test_a_broadcast_reaches_the_hubs_broadcast_room(
    setup: tuple[Live, RecordingSink, list[float]],
    hand: Hand,
) -> None:
    """The live router's key for a broadcast is the one the hub files broadcast members under."""
    live, _, _ = setup
    sink = RecordingSink()
    conn = Connection(sink)
    conn.tenant = "other"
    conn.move(State.SYNCING)
    live.hub.join(conn, "broadcast")
    conn.move(State.LIVE)
    everyone = Notification(
        id="n-all",
        tenant=None,
        event="system.notification",
        audience=BROADCAST_AUDIENCE,
        time=NOW,
        title="all",
        message="m",
    )
    await hand(live, stored("live.broadcast.system.notification", everyone.to_bytes(), 11))
    live.hub.flush()
    assert live.dropped == 0
    assert len(sink.frames) == 1
    assert sink.frames[0].endswith(encode_notification(everyone, 11, "broadcast"))


@pytest.mark.parametrize(
    ("subject", "payload", "seq"),
    [
        ("live.tenant.acme.nonsense", note().to_bytes(), 3),  # no route
        ("live.tenant.acme.incident.created", b"\xff\xff", 3),  # no envelope
        ("live.tenant.acme.incident.created", note().to_bytes(), None),  # no sequence
    ],
    ids=["bad-subject", "bad-payload", "no-sequence"],
)
async def test_an_unusable_message_is_counted_and_skipped(
    setup: tuple[Live, RecordingSink, list[float]],
    hand: Hand,
    subject: str,
    payload: bytes,
    seq: int | None,
) -> None:
    live, sink, lags = setup
    await hand(live, stored(subject, payload, seq))
    await hand(live, stored("live.tenant.acme.incident.created", note().to_bytes(), 4))
    live.hub.flush()
    assert live.dropped == 1
    assert len(sink.frames) == 1  # the next one still goes out
    assert len(lags) == 1
    assert [e[SEQ] for e in live.windows["acme"].entries] == [4]


async def test_without_a_stream_timestamp_nothing_is_observed(
    setup: tuple[Live, RecordingSink, list[float]],
    hand: Hand,
) -> None:
    live, sink, lags = setup
    await hand(live, stored("live.tenant.acme.incident.created", note().to_bytes(), 5, stamp=None))
    live.hub.flush()
    assert len(sink.frames) == 1
    assert lags == []


def reference_stored_at(stamp: str) -> float:
    """How the stamp was read before the per-second cache (a datetime per message)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def test_stream_timestamps_read_as_before() -> None:
    stamps = [
        "2026-11-26T03:53:15.498512725Z",
        "2026-11-26T03:53:15.5Z",  # Go trims trailing zeros
        "2026-11-26T03:53:15Z",  # and drops a zero fraction
        "1970-01-01T00:00:00.000000001Z",
    ]
    # More distinct seconds than the cache holds, each read twice (miss, then hit).
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps += [
        (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S") + f".{i:09d}Z"
        for i in range(150)
    ]
    for stamp in stamps + stamps:
        assert stored_at(stamp) == reference_stored_at(stamp)


@pytest.mark.parametrize(
    "stamp", ["", "yesterday", "2026-11-26T03:53:15.x5Z", "2026-11-26T03:53:15+01:00"]
)
def test_an_unreadable_timestamp_means_no_lag(stamp: str) -> None:
    assert stored_at(stamp) is None
    assert stamps.lag(stamp) == 0.0
