"""CPU per live notification inside the gateway, without sockets: where the µs go.

The end-to-end bench (`tidings bench --scenario hundred-rooms`) says how much gateway CPU one
notification costs in total; this says which step costs what, steadily enough to compare two
versions of the code on a shared machine. Everything is the gateway's own code: a real
``Gateway`` object (not started), its ``Live`` handler fed with ``Msg`` objects shaped like
nats-py's for a republished message (the seven headers a stored message carries), its hub
flushing every few messages as the 2 ms batch window does at ~2,000/s over 100 rooms, into
connections whose sinks only count bytes (no kernel write: the end-to-end bench measures that).
nats-py's own header parser is timed on the same header blocks, with and without
``Nats-Expected-Stream``, and its protocol parser on the ``HMSG`` frames that carry them (what
runs before the gateway's raw handler, which takes subject, payload and header block from it).
Each stage is timed with ``time.process_time`` over ``--messages`` messages, ``--rounds``
times; the median and the minimum per message are printed.

With ``--users N`` the messages go to single users instead (issue 12's ``users`` scenario): N
connections, user ``u<j>`` of tenant ``t<j % rooms>``, each in its tenant room, its user room
``user:u<j>`` and broadcast as a session joins them; every message is addressed to one user
(``live.tenant.<t>.user.<u>.…``), the users in turn, so each flush writes one frame per message.
The raw path production takes (``Live._on_raw``: subject, payload and header block straight
from nats-py's parser, gateway/direct.py) is timed with and without the hub's flush, and the
subject→room mapping it starts with (``room_of``) on its own.

    taskset -c 1 python -m benchmarks.live_path --messages 50000 --rounds 5
    python -m benchmarks.live_path --users 10000 --messages 20000 --rounds 3 --json
    PYTHONPATH=/path/to/other/tree/services:. python -m benchmarks.live_path   # another version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import importlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.protocol.parser import Parser

from tidings import envelope
from tidings.envelope import Notification, new_id
from tidings.gateway import direct
from tidings.gateway import live as live_module
from tidings.gateway.connection import Connection, State
from tidings.gateway.live import Live
from tidings.gateway.service import Gateway
from tidings.gateway.window import Window
from tidings.protocol import encode_notification
from tidings.publishing import PublishPolicy, prepare
from tidings.settings import AuthSettings, load_settings
from tidings.subjects import Audience, AudienceKind, room_of

SECRET = "x" * 32  # a Gateway needs one to be built; nothing is verified here


class CountingSink:
    """Takes frames like a transport would, without a socket."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0

    def write_frame(self, frame: bytearray) -> None:
        self.bytes += len(frame)

    def close(self, code: int, reason: str) -> None:
        pass


def stamp(ns: int) -> str:
    """``Nats-Time-Stamp`` as nats-server writes it (RFC 3339, nanoseconds, Z)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def user_of(user: int, rooms: int) -> tuple[str, str]:
    """(tenant, user id) of the ``--users`` mode's user number ``user``."""
    return f"t{user % rooms}", f"u{user}"


def messages(count: int, rooms: int, users: int = 0) -> list[Msg]:
    """Republished messages as the bench publishes them: tenant rooms in turn, or with
    ``users`` one user each, the users in turn."""
    policy = PublishPolicy()
    out: list[Msg] = []
    base = time.time_ns()
    for i in range(count):
        body: dict[str, Any] = {
            "event": "incident.created",
            "title": "Spill in hall 3",
            "message": "Cleanup under way, avoid the east entrance",
            "severity": "warning",
        }
        if users:
            tenant, user = user_of(i % users, rooms)
            body["audience"] = {"user": user}
        else:
            tenant = f"t{i % rooms}"
        body["tenant"] = tenant
        msg = prepare(body, policy)
        note = Notification.from_bytes(msg.payload)
        nid = new_id()
        data = b'{"k":1,"s":0,"i":%d,"t":%d}' % (i, time.monotonic_ns())
        payload = dataclasses.replace(note, id=nid, data=data).to_bytes()
        seq = i + 1
        headers = {
            "Nats-Msg-Id": nid,
            "Nats-Expected-Stream": "TIDINGS",
            "Nats-Stream": "TIDINGS",
            "Nats-Subject": msg.subject,
            "Nats-Sequence": str(seq),
            "Nats-Time-Stamp": stamp(base + i * 500_000),
            "Nats-Last-Sequence": str(seq - 1),
        }
        out.append(
            Msg(
                _client=None,  # type: ignore[arg-type]
                subject=f"live.{msg.subject}",
                data=payload,
                headers=headers,
            )
        )
    return out


def header_block(headers: dict[str, str]) -> bytes:
    """The bytes nats-py parses for every message (after ``NATS/1.0\\r\\n``)."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"


class ParsedOnly:
    """A client for nats-py's parser that takes each message and does nothing with it."""

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        pass


def hmsg_wire(raw: list[tuple[bytes, bytes, bytes]], sid: int = 1) -> bytes:
    """The ``HMSG`` frames nats-server sends for ``raw`` (subject, payload, header block)."""
    return b"".join(
        b"HMSG %s %d %d %d\r\n%s%s\r\n"
        % (subject, sid, len(block), len(block) + len(data), block, data)
        for subject, data, block in raw
    )


def feed(parser: Parser, wire: bytes, chunk: int = 65536) -> None:
    """``parser`` over ``wire`` in socket-sized reads (its client awaits nothing here)."""
    for at in range(0, len(wire), chunk):
        with contextlib.suppress(StopIteration):
            parser.parse(wire[at : at + chunk]).send(None)
    assert not parser.buf, "every frame must have been parsed"


def run_parser(wire: bytes) -> None:
    """nats-py's own parser, its client taking each message and doing nothing with it."""
    feed(Parser(ParsedOnly()), wire)


def run_routed_parser(wire: bytes) -> None:
    """The parser as the gateway runs it: a nats-py client with ``gateway.direct`` installed
    and sid 1 routed to a handler that does nothing (before decision 60: nats-py's parser and
    ``Direct._process_msg``; since: ``Direct.parse``)."""
    nc = NATS()
    routes = direct.install(nc)
    assert routes is not None, "gateway.direct does not support this nats-py"
    routes.route(1, lambda subject, data, headers: None)
    feed(nc._ps, wire)


def per_message(fn: Callable[[], object], n: int) -> float:
    """µs of process CPU per message for ``fn``, which handles ``n`` messages."""
    gc.collect()
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e6 / n


def build_gateway(
    rooms: int, receivers: int, muting: float = 0.0, users: int = 0
) -> tuple[Gateway, Live]:
    """``receivers`` connections in each tenant room, or with ``users`` that many connections
    of a user each (see :func:`user_of`). ``muting``: the share of connections whose user muted
    a domain (``billing``: not the benchmark's, so each is still sent everything, through the
    filtered path)."""
    settings = load_settings(auth=AuthSettings(jwt_secret=SECRET))  # type: ignore[arg-type]
    gw = Gateway(settings)
    gs = settings.gateway
    live = Live.from_settings(
        None,  # type: ignore[arg-type]  # no subscription is made: messages are fed by hand
        None,  # type: ignore[arg-type]
        gw.hub,
        settings,
        on_delivered=gw.metrics.latency.observe,
    )
    gw.live = live
    for r in range(rooms):
        tenant = f"t{r}"
        window = Window(max_count=gs.replay_max_messages, max_age=gs.replay_max_age)
        window.arm(0)
        live.windows[tenant] = window
        if users:
            continue
        for i in range(receivers):
            conn = live_connection(tenant, "", i < round(receivers * muting))
            gw.hub.join(conn, "tenant")
    for j in range(users):
        tenant, user = user_of(j, rooms)
        conn = live_connection(tenant, user, j < round(users * muting))
        for room in ("broadcast", "tenant", f"user:{user}"):  # a session's default rooms
            gw.hub.join(conn, room)
    return gw, live


def live_connection(tenant: str, user: str, muting: bool) -> Connection:
    conn = Connection(CountingSink())
    conn.tenant = tenant
    conn.user = user
    if muting:
        conn.muted = frozenset({"billing"})
    conn.move(State.SYNCING)
    conn.move(State.LIVE)
    return conn


async def run_handler(live: Live, msgs: list[Msg], batch: int, *, write: bool = True) -> None:
    """``Live._on_message`` for every message (it never awaits), flushing every ``batch``;
    without ``write`` what is due is thrown away instead (the handler's own cost)."""
    hub = live.hub
    for i, msg in enumerate(msgs, 1):
        with contextlib.suppress(StopIteration):
            live._on_message(msg).send(None)
        if i % batch == 0:
            if write:
                hub.flush()
            else:
                hub._due.clear()
    hub.flush()


async def run_raw(
    live: Any, raw: list[tuple[bytes, bytes, bytes]], batch: int, *, write: bool = True
) -> None:
    """``Live._on_raw`` (the direct path) for every message, flushing every ``batch``; without
    ``write`` what is due is thrown away instead. Inside a running loop, as in the gateway:
    without one ``Hub.publish`` would flush every message at once."""
    hub = live.hub
    settle = hub.flush if write else hub._due.clear
    for i, (subject, data, block) in enumerate(raw, 1):
        live._on_raw(subject, data, block)
        if i % batch == 0:
            settle()
    settle()


def measure(
    count: int, rooms: int, receivers: int, batch: int, muting: float = 0.0, users: int = 0
) -> dict[str, float]:
    msgs = messages(count, rooms, users)
    subjects = [m.subject for m in msgs]
    payloads = [m.data for m in msgs]
    blocks = [header_block(m.headers or {}) for m in msgs]
    without_expected = [
        header_block({k: v for k, v in (m.headers or {}).items() if k != "Nats-Expected-Stream"})
        for m in msgs
    ]
    stamps = [(m.headers or {})["Nats-Time-Stamp"] for m in msgs]
    decoded = [Notification.from_bytes(p) for p in payloads]
    parse = NATS._parse_header_lines  # nats-py's own parser, as it runs for every message
    out: dict[str, float] = {}
    out["nats-py headers (7)"] = per_message(lambda: [parse(b) for b in blocks], count)
    out["nats-py headers (6)"] = per_message(lambda: [parse(b) for b in without_expected], count)
    out["Notification.from_bytes"] = per_message(
        lambda: [Notification.from_bytes(p) for p in payloads], count
    )
    raw = [
        (m.subject.encode(), m.data, b"NATS/1.0\r\n" + header_block(m.headers or {})) for m in msgs
    ]
    frames = hmsg_wire(raw)
    out["nats-py parser (HMSG)"] = per_message(lambda: run_parser(frames), count)
    out["gateway parser (HMSG, routed)"] = per_message(lambda: run_routed_parser(frames), count)
    out["room_of"] = per_message(lambda: [room_of(s) for s in subjects], count)
    out["encode_notification"] = per_message(
        lambda: [encode_notification(n, 7, "tenant") for n in decoded], count
    )
    lean: Any = getattr(envelope, "decode_wire", None)  # the live path's decode, where it exists
    if lean is not None:
        out["decode_wire"] = per_message(lambda: [lean(p) for p in payloads], count)
        # To one user each, routed as the live path reads it: the audience name is checked.
        to_users = [
            (
                dataclasses.replace(n, audience=Audience(AudienceKind.USER, f"u{i}")).to_bytes(),
                (n.tenant or "", f"user:u{i}"),
            )
            for i, n in enumerate(decoded)
        ]
        out["decode_wire (user, routed)"] = per_message(
            lambda: [lean(p, route) for p, route in to_users], count
        )
        wire = [lean(p) for p in payloads]
        out["encode_notification (wire)"] = per_message(
            lambda: [encode_notification(n, 7, "tenant") for n in wire], count
        )
    # Where the stamp is read: live.py before issue 12 item 3, gateway/stamps.py since.
    lag: Any = (
        getattr(live_module, "_lag", None) or importlib.import_module("tidings.gateway.stamps").lag
    )
    out["lag (Nats-Time-Stamp)"] = per_message(lambda: [lag(s) for s in stamps], count)
    expected = count if users else count * receivers
    _, live = build_gateway(rooms, receivers, users=users)
    out["Live._on_message (no writes)"] = per_message(
        lambda: asyncio.run(run_handler(live, msgs, batch, write=False)), count
    )
    if hasattr(live, "_on_raw"):  # the direct path (gateway/direct.py) where it exists
        _, live = build_gateway(rooms, receivers, users=users)
        out["Live._on_raw (no writes)"] = per_message(
            lambda: asyncio.run(run_raw(live, raw, batch, write=False)), count
        )
        gw, live = build_gateway(rooms, receivers, muting, users)
        out["Live._on_raw + Hub.flush"] = per_message(
            lambda: asyncio.run(run_raw(live, raw, batch)), count
        )
        assert live.dropped == 0, "the benchmark's messages must all be delivered"
        assert gw.hub.deliveries == expected
    gw, live = build_gateway(rooms, receivers, muting, users)
    out["Live._on_message + Hub.flush"] = per_message(
        lambda: asyncio.run(run_handler(live, msgs, batch)), count
    )
    assert live.dropped == 0, "the benchmark's messages must all be delivered"
    assert gw.hub.deliveries == expected
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rooms", type=int, default=100, help="tenant rooms (one tenant each)")
    ap.add_argument("--receivers", type=int, default=10, help="connections per room")
    ap.add_argument(
        "--users",
        type=int,
        default=0,
        help="instead of --receivers: this many connections of a user each over the --rooms"
        " tenants, every message to one user",
    )
    ap.add_argument("--batch", type=int, default=4, help="messages per hub flush")
    ap.add_argument(
        "--muting", type=float, default=0.0, help="share of connections with a muted domain"
    )
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = ap.parse_args()
    rounds = [
        measure(args.messages, args.rooms, args.receivers, args.batch, args.muting, args.users)
        for _ in range(args.rounds)
    ]
    medians = {k: round(statistics.median(r[k] for r in rounds), 2) for k in rounds[0]}
    if args.json:
        print(json.dumps(medians))
        return
    to = f"{args.users:,} single users" if args.users else f"{args.receivers} per room"
    print(f"µs of CPU per message over {args.messages:,} messages to {to}, {args.rounds} rounds")
    print(f"  {'stage':<30} {'median':>8} {'min':>8}")
    for name, value in medians.items():
        print(f"  {name:<30} {value:8.2f} {min(r[name] for r in rounds):8.2f}")


if __name__ == "__main__":
    main()
