"""The routed framing in front of nats-py's parser (gateway/direct.py, ``Direct.parse``): for
any way the bytes of a connection are cut into reads, routed messages reach their handler and
every other operation reaches nats-py exactly as nats-py's own parser hands them on, in the
order read; a malformed line fails the way nats-py fails it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.errors import ProtocolError

from tidings.gateway import direct

ROUTED = 7

HDR = b"NATS/1.0\r\nNats-Sequence: 41\r\nNats-Time-Stamp: 2026-12-06T03:00:00.5Z\r\n\r\n"
BODY = b"\x08\x01 HMSG x 7 10 20\r\nMSG y 1 3\r\n \r\n payload"  # protocol-looking bytes inside

STREAM = b"".join(
    [
        b'INFO {"server_id":"x","max_payload":1048576}\r\n',
        b"HMSG live.tenant.a.tenant 7 %d %d\r\n%s%s\r\n" % (len(HDR), len(HDR) + 5, HDR, b"first"),
        b"HMSG _INBOX.abc.1 3 %d %d\r\n%s%s\r\n" % (len(HDR), len(HDR) + 4, HDR, b"side"),
        b"MSG live.tenant.a.user.u1 7 9\r\nno-header\r\n",
        b"+OK\r\n",
        b"MSG svc.echo 4 _INBOX.r.2 2\r\nhi\r\n",
        b"PING\r\n",
        b"HMSG live.tenant.a.tenant 7 reply.to %d %d\r\n%s%s\r\n"
        % (len(HDR), len(HDR) + len(BODY), HDR, BODY),
        b"PONG\r\n",
        b"MSG live.tenant.a.tenant 7 0\r\n\r\n",
        b"HMSG live.tenant.a.tenant   7   %d   %d\r\n%s%s\r\n"
        % (len(HDR), len(HDR) + 4, HDR, b"last"),
    ]
)


def _client(events: list[tuple[Any, ...]]) -> NATS:
    """A nats-py client that is never connected: its parser's callbacks record what they get."""
    nc = NATS()

    async def process_msg(
        sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        events.append(("msg", sid, subject, reply, data, headers))

    async def process_ping() -> None:
        events.append(("ping",))

    async def process_pong() -> None:
        events.append(("pong",))

    async def process_info(info: dict[str, Any], **_: Any) -> None:
        events.append(("info", json.dumps(info, sort_keys=True)))

    nc._process_msg = process_msg  # type: ignore[method-assign]
    nc._process_ping = process_ping  # type: ignore[method-assign]
    nc._process_pong = process_pong  # type: ignore[method-assign]
    nc._process_info = process_info  # type: ignore[method-assign,assignment]
    return nc


async def _expected() -> list[tuple[Any, ...]]:
    """nats-py's own parser on the whole stream; the routed sid's messages as the handler
    gets them (subject, payload, headers)."""
    events: list[tuple[Any, ...]] = []
    await _client(events)._ps.parse(STREAM)
    return [("routed", e[2], e[4], e[5]) if e[0] == "msg" and e[1] == ROUTED else e for e in events]


async def _fed(cuts: list[int]) -> tuple[list[tuple[Any, ...]], NATS]:
    events: list[tuple[Any, ...]] = []
    nc = _client(events)
    routes = direct.install(nc)
    assert routes is not None
    routes.route(ROUTED, lambda s, d, h: events.append(("routed", s, d, h)))
    at = 0
    for cut in [*cuts, len(STREAM)]:
        await nc._ps.parse(STREAM[at:cut])
        at = cut
    return events, nc


async def test_one_read_gives_what_nats_py_gives() -> None:
    expected = await _expected()
    assert [e[0] for e in expected] == [
        "info", "routed", "msg", "routed", "msg", "ping", "routed", "pong", "routed", "routed",
    ]  # fmt: skip
    got, nc = await _fed([])
    assert got == expected
    assert not nc._ps.buf
    assert nc.stats["in_msgs"] == 5  # the routed ones: the others count in nats-py's path


async def test_every_cut_into_two_reads_gives_the_same() -> None:
    expected = await _expected()
    for cut in range(1, len(STREAM)):
        got, nc = await _fed([cut])
        assert got == expected, f"cut at byte {cut}"
        assert not nc._ps.buf


async def test_a_byte_at_a_time_gives_the_same() -> None:
    got, nc = await _fed(list(range(1, len(STREAM))))
    assert got == await _expected()
    assert nc.stats["in_bytes"] == len(b"first") + len(b"no-header") + len(BODY) + len(b"last")


@pytest.mark.parametrize(
    "line",
    [b"MSG only-a-subject\r\n", b"MSG s seven 10\r\n", b"HMSG s 7 x\r\n", b"BOGUS\r\n"],
)
async def test_a_malformed_line_fails_as_nats_py_fails_it(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        await _client([])._ps.parse(line + b"0123456789\r\n")
    events: list[tuple[Any, ...]] = []
    nc = _client(events)
    routes = direct.install(nc)
    assert routes is not None
    routes.route(ROUTED, lambda s, d, h: events.append(("routed", s, d, h)))
    with pytest.raises(ProtocolError):
        await nc._ps.parse(line + b"0123456789\r\n")
    assert events == []
